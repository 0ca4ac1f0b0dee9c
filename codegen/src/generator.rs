//! Our `prost_build::ServiceGenerator`: tonic's output first, then the Cloud Run wrapper.

use std::cell::RefCell;
use std::rc::Rc;

use prost_build::{Service, ServiceGenerator};

use crate::runtime::Runtime;
use crate::{pedantic, wrapper};

/// Wraps tonic-prost-build's generator so every service also gets a `foo_cloud_run` module.
pub(crate) struct CloudRunServiceGenerator {
    /// tonic's generator, `None` when neither client nor server is wanted.
    pub(crate) tonic: Option<Box<dyn ServiceGenerator>>,
    /// The runtime path the wrappers name, `None` when no wrapper is wanted (it needs tonic's
    /// client).
    pub(crate) wrappers: Option<Runtime>,
    /// Problems found while generating: `ServiceGenerator::generate` cannot return an error,
    /// so they are collected here and turned into one after prost-build returns.
    pub(crate) errors: Rc<RefCell<Vec<String>>>,
}

impl ServiceGenerator for CloudRunServiceGenerator {
    fn generate(&mut self, service: Service, buf: &mut String) {
        let wrapper = self
            .wrappers
            .as_ref()
            .map(|runtime| wrapper::generate(&service, runtime));
        if let Some(tonic) = &mut self.tonic {
            let name = service.name.clone();
            let mut code = String::new();
            tonic.generate(service, &mut code);
            match pedantic::allow_in_tonic_modules(&name, &code) {
                Ok(allowed) => buf.push_str(&allowed),
                Err(e) => self.errors.borrow_mut().push(format!(
                    "tonic's code for service `{name}` does not parse: {e}"
                )),
            }
        }
        let formatted = wrapper.map(|tokens| {
            tokens.and_then(|tokens| {
                syn::parse2::<syn::File>(tokens)
                    .map(|file| prettyplease::unparse(&file))
                    .map_err(|e| format!("the generated wrapper does not parse: {e}"))
            })
        });
        match formatted {
            Some(Ok(code)) => buf.push_str(&code),
            Some(Err(error)) => self.errors.borrow_mut().push(error),
            None => {}
        }
    }

    fn finalize(&mut self, buf: &mut String) {
        if let Some(tonic) = &mut self.tonic {
            tonic.finalize(buf);
        }
    }

    fn finalize_package(&mut self, package: &str, buf: &mut String) {
        if let Some(tonic) = &mut self.tonic {
            tonic.finalize_package(package, buf);
        }
    }
}
