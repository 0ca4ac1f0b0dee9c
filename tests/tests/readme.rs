//! The README's quick start, as written there (the crate is `bookstore` in the README; here the
//! library part is a module), run against the emulated Cloud Run: if it stops compiling,
//! warns, or stops working, so does this test.
#![deny(warnings)]

mod bookstore {
    pub mod pb {
        cloud_run_grpc::include_proto!("acme.bookstore.v1");
    }

    /// The bookstore service on Cloud Run.
    #[cloud_run_grpc::cloud_run_client(
        host = "bookstore-abc123-ew.a.run.app",
        service = pb::bookstore_cloud_run::Bookstore,
        env = "BOOKSTORE_URL", // optional: point the same binary at staging or http://127.0.0.1:8080
        timeout = "30s",       // optional: a deadline for every call, streams included
    )]
    pub struct Bookstore;

    /// The titles of the books by `author` (`&Bookstore` derefs to the generated wrapper).
    pub async fn titles_by(
        books: &pb::bookstore_cloud_run::Bookstore,
        author: &str,
    ) -> Result<Vec<String>, tonic::Status> {
        let request = pb::ListBooksRequest {
            author: author.into(),
            limit: 0,
        };
        let mut stream = books.list_books(request).await?; // server streaming: a tonic::Streaming
        let mut titles = Vec::new();
        while let Some(book) = stream.message().await? {
            titles.push(book.title);
        }
        Ok(titles)
    }
}

/// The README's `main`, on a channel to the emulated Cloud Run instead of `Bookstore::new()`.
async fn main(books: bookstore::Bookstore) -> Result<Vec<String>, tonic::Status> {
    let book = books
        .get_book(bookstore::pb::GetBookRequest { id: "b-1".into() })
        .await?;
    println!("{} by {}", book.title, book.author); // unary: the response message itself
    let quick = books.with_timeout(std::time::Duration::from_secs(2)); // per call: overrides `timeout`
    bookstore::titles_by(&quick, &book.author).await
}

#[tokio::test]
async fn the_quick_start_runs() {
    use bookstore::pb::{Book, CreateBookRequest};
    use cloud_run_grpc_examples::MemoryBookstore;
    use cloud_run_grpc_testkit::CloudRun;

    let cloud_run = CloudRun::serve(
        bookstore::Bookstore::HOST,
        MemoryBookstore::default().routes(),
    )
    .await
    .unwrap();
    let books = bookstore::Bookstore::with_channel(cloud_run.channel());
    let dune = Book {
        id: "b-1".into(),
        title: "Dune".into(),
        author: "Frank Herbert".into(),
        ..Book::default()
    };
    books
        .create_book(CreateBookRequest { book: Some(dune) })
        .await
        .unwrap();
    assert_eq!(main(books).await.unwrap(), ["Dune"]);
}
