//! Our `prost_build::ServiceGenerator`: tonic's output first, then the Cloud Run wrapper.

use prost_build::{Service, ServiceGenerator};

/// Wraps tonic-prost-build's generator so every service also gets a `foo_cloud_run` module.
pub(crate) struct CloudRunServiceGenerator {
    pub(crate) tonic: Option<Box<dyn ServiceGenerator>>,
}

impl ServiceGenerator for CloudRunServiceGenerator {
    fn generate(&mut self, service: Service, buf: &mut String) {
        if let Some(tonic) = &mut self.tonic {
            tonic.generate(service, buf);
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
