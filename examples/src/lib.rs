//! The bookstore service the examples and the workspace tests call: generated code for
//! `proto/bookstore.proto` and an in-memory implementation of its server.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_stream::{Stream, StreamExt as _};
use tonic::{Request, Response, Status, Streaming};

/// Code generated from `proto/bookstore.proto`.
pub mod pb {
    #![allow(missing_docs)]
    cloud_run_grpc::include_proto!("acme.bookstore.v1");
}

use pb::{
    Book, ChatMessage, CreateBookRequest, GetBookRequest, ListBooksRequest, UploadBooksResponse,
};

/// A bookstore that keeps its books in memory.
#[derive(Debug, Default)]
pub struct MemoryBookstore {
    books: Mutex<BTreeMap<String, Book>>,
    next_id: AtomicUsize,
}

impl MemoryBookstore {
    /// Serves this bookstore as tonic routes, ready for a server (or the testkit's front end).
    pub fn routes(self) -> tonic::service::Routes {
        tonic::service::Routes::new(pb::bookstore_server::BookstoreServer::new(self))
    }

    fn add(&self, mut book: Book) -> Book {
        if book.id.is_empty() {
            book.id = format!("book-{}", self.next_id.fetch_add(1, Ordering::Relaxed) + 1);
        }
        let mut books = self.books.lock().unwrap_or_else(|e| e.into_inner());
        books.insert(book.id.clone(), book.clone());
        book
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl pb::bookstore_server::Bookstore for MemoryBookstore {
    async fn create_book(
        &self,
        request: Request<CreateBookRequest>,
    ) -> Result<Response<Book>, Status> {
        let book = request
            .into_inner()
            .book
            .ok_or_else(|| Status::invalid_argument("`book` is required"))?;
        if book.title.is_empty() {
            return Err(Status::invalid_argument("a book needs a title"));
        }
        Ok(Response::new(self.add(book)))
    }

    async fn get_book(&self, request: Request<GetBookRequest>) -> Result<Response<Book>, Status> {
        let id = request.into_inner().id;
        let books = self.books.lock().unwrap_or_else(|e| e.into_inner());
        books
            .get(&id)
            .cloned()
            .map(Response::new)
            .ok_or_else(|| Status::not_found(format!("no book {id}")))
    }

    type ListBooksStream = BoxStream<Book>;

    async fn list_books(
        &self,
        request: Request<ListBooksRequest>,
    ) -> Result<Response<Self::ListBooksStream>, Status> {
        let ListBooksRequest { author, limit } = request.into_inner();
        let books: Vec<_> = {
            let books = self.books.lock().unwrap_or_else(|e| e.into_inner());
            books
                .values()
                .filter(|b| author.is_empty() || b.author == author)
                .take(if limit > 0 {
                    limit as usize
                } else {
                    usize::MAX
                })
                .cloned()
                .map(Ok)
                .collect()
        };
        Ok(Response::new(Box::pin(tokio_stream::iter(books))))
    }

    async fn upload_books(
        &self,
        request: Request<Streaming<Book>>,
    ) -> Result<Response<UploadBooksResponse>, Status> {
        let mut stream = request.into_inner();
        let mut count = 0;
        while let Some(book) = stream.next().await {
            self.add(book?);
            count += 1;
        }
        Ok(Response::new(UploadBooksResponse { count }))
    }

    type ChatStream = BoxStream<ChatMessage>;

    async fn chat(
        &self,
        request: Request<Streaming<ChatMessage>>,
    ) -> Result<Response<Self::ChatStream>, Status> {
        let replies = request.into_inner().map(|message| {
            message.map(|m| ChatMessage {
                from: "bookstore".into(),
                text: format!("you said: {}", m.text),
            })
        });
        Ok(Response::new(Box::pin(replies)))
    }
}

/// The in-memory bookstore with `GetBook` held for a settable time, counting the `GetBook`s
/// it is working on: a service that does some work, for load and reliability tests. Clones
/// share the books, the delay and the count.
#[derive(Debug, Clone, Default)]
pub struct SlowBookstore {
    inner: Arc<MemoryBookstore>,
    delay_ms: Arc<AtomicU64>,
    in_progress: Arc<AtomicUsize>,
}

impl SlowBookstore {
    /// Holds every `GetBook` for `delay` from now on.
    pub fn set_delay(&self, delay: Duration) {
        let millis = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.delay_ms.store(millis, Ordering::SeqCst);
    }

    /// How many `GetBook`s the server is working on.
    pub fn in_progress(&self) -> usize {
        self.in_progress.load(Ordering::SeqCst)
    }

    /// Serves this bookstore as tonic routes.
    pub fn routes(&self) -> tonic::service::Routes {
        tonic::service::Routes::new(pb::bookstore_server::BookstoreServer::new(self.clone()))
    }
}

/// Counts a `GetBook` in progress for as long as it lives (also when the server drops it).
struct InProgress(Arc<AtomicUsize>);

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[tonic::async_trait]
impl pb::bookstore_server::Bookstore for SlowBookstore {
    async fn create_book(
        &self,
        request: Request<CreateBookRequest>,
    ) -> Result<Response<Book>, Status> {
        self.inner.create_book(request).await
    }

    async fn get_book(&self, request: Request<GetBookRequest>) -> Result<Response<Book>, Status> {
        self.in_progress.fetch_add(1, Ordering::SeqCst);
        let _counted = InProgress(Arc::clone(&self.in_progress));
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        self.inner.get_book(request).await
    }

    type ListBooksStream = BoxStream<Book>;

    async fn list_books(
        &self,
        request: Request<ListBooksRequest>,
    ) -> Result<Response<Self::ListBooksStream>, Status> {
        self.inner.list_books(request).await
    }

    async fn upload_books(
        &self,
        request: Request<Streaming<Book>>,
    ) -> Result<Response<UploadBooksResponse>, Status> {
        self.inner.upload_books(request).await
    }

    type ChatStream = BoxStream<ChatMessage>;

    async fn chat(
        &self,
        request: Request<Streaming<ChatMessage>>,
    ) -> Result<Response<Self::ChatStream>, Status> {
        self.inner.chat(request).await
    }
}
