//! The bodies of a call: the request as sent (whole when it can be, so it goes out in one
//! `DATA` frame and can be sent again), and the response as the caller reads it (bounded by the
//! call's deadline, with transport failures turned into statuses).

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::uri::Authority;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use tokio::time::Sleep;
use tonic::Status;

use super::pool::InFlight;

/// A request body on its way to the server.
#[derive(Debug)]
pub(crate) enum RequestBody {
    /// The whole body, known before the request is sent: unary and server-streaming calls,
    /// whose one message tonic encodes as soon as it is asked. It goes out as one `DATA` frame
    /// carrying `END_STREAM`, and a copy (a reference count) allows sending it again.
    Whole(Option<Bytes>),
    /// A body still being produced (client and bidi streaming): the frames already pulled,
    /// then the rest as it comes.
    Streaming {
        pulled: Vec<Frame<Bytes>>,
        rest: tonic::body::Body,
    },
}

impl RequestBody {
    /// Pulls what `body` has ready without waiting, to learn whether it is whole: a unary
    /// body yields its message and then its end at once. A body that is not ready is left
    /// to be pulled by the connection, whose poll registers the real waker.
    pub(crate) fn probe(mut body: tonic::body::Body) -> Result<Self, Status> {
        let mut cx = Context::from_waker(Waker::noop());
        // A whole body is one data frame then the end; two polls tell.
        let first = match pull(&mut body, &mut cx)? {
            Pulled::End => return Ok(RequestBody::Whole(Some(Bytes::new()))),
            Pulled::NotYet => return Ok(streaming(Vec::new(), body)),
            Pulled::Frame(frame) => frame,
        };
        match pull(&mut body, &mut cx)? {
            Pulled::End => match first.into_data() {
                Ok(data) => Ok(RequestBody::Whole(Some(data))),
                Err(trailers) => Ok(streaming(vec![trailers], body)),
            },
            Pulled::NotYet => Ok(streaming(vec![first], body)),
            Pulled::Frame(second) => Ok(streaming(vec![first, second], body)),
        }
    }

    /// The bytes to send again, if the body is whole and not yet sent.
    pub(crate) fn replayable(&self) -> Option<Bytes> {
        match self {
            RequestBody::Whole(bytes) => bytes.clone(),
            RequestBody::Streaming { .. } => None,
        }
    }
}

/// What one poll of a body without waiting gave.
enum Pulled {
    Frame(Frame<Bytes>),
    End,
    NotYet,
}

fn pull(body: &mut tonic::body::Body, cx: &mut Context<'_>) -> Result<Pulled, Status> {
    if body.is_end_stream() {
        return Ok(Pulled::End);
    }
    match Pin::new(body).poll_frame(cx) {
        Poll::Ready(None) => Ok(Pulled::End),
        Poll::Ready(Some(Ok(frame))) => Ok(Pulled::Frame(frame)),
        Poll::Ready(Some(Err(status))) => Err(status),
        Poll::Pending => Ok(Pulled::NotYet),
    }
}

fn streaming(pulled: Vec<Frame<Bytes>>, rest: tonic::body::Body) -> RequestBody {
    RequestBody::Streaming { pulled, rest }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        match self.get_mut() {
            RequestBody::Whole(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            RequestBody::Streaming { pulled, rest } => {
                if !pulled.is_empty() {
                    return Poll::Ready(Some(Ok(pulled.remove(0))));
                }
                Pin::new(rest).poll_frame(cx)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Whole(bytes) => bytes.is_none(),
            RequestBody::Streaming { pulled, rest } => pulled.is_empty() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Whole(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            RequestBody::Streaming { .. } => SizeHint::default(),
        }
    }
}

/// The body of a response, as tonic reads it: the messages of a unary or streaming call.
///
/// It ends the call with `DEADLINE_EXCEEDED` when the call's deadline passes mid-body (and
/// resets the stream, so the server stops too), and turns a connection lost mid-stream into a
/// status with the host in its message. `Default` is an empty body, which tonic's interceptors
/// need to answer on their own.
#[derive(Default)]
pub struct ResponseBody {
    kind: Kind,
}

#[derive(Default)]
enum Kind {
    #[default]
    Empty,
    Http(Inner),
    /// What a user's layer answered with, when it changed the body type.
    Boxed(UnsyncBoxBody<Bytes, Status>),
}

struct Inner {
    body: Incoming,
    deadline: Option<(Pin<Box<Sleep>>, Duration)>,
    authority: Authority,
    _in_flight: InFlight,
}

impl ResponseBody {
    pub(crate) fn new(
        body: Incoming,
        deadline: Option<(Pin<Box<Sleep>>, Duration)>,
        authority: Authority,
        in_flight: InFlight,
    ) -> Self {
        ResponseBody {
            kind: Kind::Http(Inner {
                body,
                deadline,
                authority,
                _in_flight: in_flight,
            }),
        }
    }

    /// Any body, as a `ResponseBody` (itself when it already is one).
    pub(crate) fn boxed<B>(body: B) -> Self
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<crate::BoxError>,
    {
        let mut body = Some(body);
        if let Some(ours) = (&mut body as &mut dyn Any).downcast_mut::<Option<ResponseBody>>() {
            return ours.take().unwrap_or_default();
        }
        match body {
            Some(body) => ResponseBody {
                kind: Kind::Boxed(
                    body.map_err(|e| Status::from_error(e.into()))
                        .boxed_unsync(),
                ),
            },
            None => ResponseBody::default(),
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        let inner = match &mut this.kind {
            Kind::Empty => return Poll::Ready(None),
            Kind::Boxed(body) => return Pin::new(body).poll_frame(cx),
            Kind::Http(inner) => inner,
        };
        // The deadline first: a body whose frames are always ready must not outrun it.
        if let Some((sleep, total)) = &mut inner.deadline
            && sleep.as_mut().poll(cx).is_ready()
        {
            let status = Status::deadline_exceeded(format!(
                "the call to {} did not finish within its deadline of {total:?}",
                inner.authority
            ));
            // Dropping the body resets the stream (RST_STREAM CANCEL): the server stops too.
            this.kind = Kind::Empty;
            return Poll::Ready(Some(Err(status)));
        }
        match Pin::new(&mut inner.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(Some(Err(error))) => {
                let status =
                    super::failure::status(error, &inner.authority, "while reading the response");
                this.kind = Kind::Empty;
                Poll::Ready(Some(Err(status)))
            }
            Poll::Ready(None) => {
                // Done: release the stream's slot on the connection now, not when tonic drops us.
                this.kind = Kind::Empty;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Http(inner) => inner.body.is_end_stream(),
            Kind::Boxed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Http(inner) => inner.body.size_hint(),
            Kind::Boxed(body) => body.size_hint(),
        }
    }
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("done", &matches!(self.kind, Kind::Empty))
            .finish_non_exhaustive()
    }
}
