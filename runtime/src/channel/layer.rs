//! A user's tower layer under the channel (request ids, trace propagation, metrics), erased to
//! one type so that `CloudRunChannel` stays one type whatever the layer.
//!
//! The layer wraps the channel's own service, so it runs before the token is added and never
//! sees it; its response bodies are boxed to the channel's [`ResponseBody`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use tower_service::Service;

use super::{ChannelService, ResponseFuture};
use crate::{BoxError, ResponseBody};

type Req = Request<tonic::body::Body>;

/// A cloneable, type-erased service over [`ChannelService`].
pub(crate) struct Layered(Box<dyn ErasedService>);

impl Clone for Layered {
    fn clone(&self) -> Self {
        Layered(self.0.clone_box())
    }
}

impl Layered {
    /// `layer` applied to `core`.
    pub(crate) fn new<L, S, B>(layer: &L, core: ChannelService) -> Self
    where
        L: tower_layer::Layer<ChannelService, Service = S>,
        S: Service<Req, Response = Response<B>> + Clone + Send + Sync + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        Layered(Box::new(layer.layer(core)))
    }

    pub(crate) fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx)
    }

    pub(crate) fn call(&mut self, request: Req) -> ResponseFuture {
        ResponseFuture::from_box(self.0.call(request))
    }
}

type Answer = Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, BoxError>> + Send>>;

trait ErasedService: Send + Sync {
    fn clone_box(&self) -> Box<dyn ErasedService>;
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>>;
    fn call(&mut self, request: Req) -> Answer;
}

impl<S, B> ErasedService for S
where
    S: Service<Req, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    fn clone_box(&self) -> Box<dyn ErasedService> {
        Box::new(self.clone())
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Service::poll_ready(self, cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Answer {
        let future = Service::call(self, request);
        Box::pin(async move {
            let response = future.await.map_err(Into::into)?;
            Ok(response.map(ResponseBody::boxed))
        })
    }
}
