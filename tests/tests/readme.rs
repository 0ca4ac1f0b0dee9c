//! The README's quick start, as written there (the crate is `bookstore` in the README; here the
//! library part is a module), run against the emulated Cloud Run: if it stops compiling,
//! warns, or stops working, so does this test. The README's blocks are checked against this
//! file and `fixture.rs`, so neither can drift from what runs.
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

/// Whitespace and trailing commas dropped: what rustfmt may change, and nothing else.
fn normalized(code: &str) -> String {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    code.replace(",}", "}").replace(",)", ")")
}

/// The README's code blocks after `after`, up to the next one.
fn readme_block(readme: &str, after: &str) -> String {
    let start = readme.find(after).expect("the README names the file");
    let block = &readme[start..];
    let open = block
        .find("```rust,ignore\n")
        .expect("a Rust block follows")
        + 15;
    let close = block[open..].find("```").expect("the block ends") + open;
    block[open..close].to_owned()
}

/// This file is the README's quick start: the two cannot drift apart.
#[test]
fn this_file_is_what_the_readme_says() {
    let readme = include_str!("../../README.md");
    let this = normalized(include_str!("readme.rs"));
    let lib = readme_block(readme, "`src/lib.rs`");
    assert!(
        this.contains(&normalized(&lib)),
        "README.md's src/lib.rs differs from mod bookstore here: change both"
    );
    // `main` differs where it must: no `#[tokio::main]`, a channel given, titles returned.
    let differs = [
        "#[tokio::main]",
        "async fn main() -> Result<(), tonic::Status> {",
        "let books = bookstore::Bookstore::new();",
        "println!(\"{:?}\", bookstore::titles_by(&quick, &book.author).await?);",
        "Ok(())",
        "}",
    ];
    for line in readme_block(readme, "`src/main.rs`").lines() {
        let code = line.split(" // ").next().unwrap_or(line).trim();
        if !code.is_empty() && !differs.contains(&code) {
            assert!(
                this.contains(&normalized(code)),
                "README.md's main has `{code}`, and this file does not: change both"
            );
        }
    }
}

/// The README's "Testing your client" is `fixture.rs`, line for line.
#[test]
fn the_readme_test_is_fixture_rs() {
    let readme = include_str!("../../README.md");
    let fixture = normalized(include_str!("fixture.rs"));
    let block = readme_block(readme, "(tests/tests/fixture.rs)");
    for line in block.lines().map(str::trim).filter(|l| !l.is_empty()) {
        assert!(
            fixture.contains(&normalized(line)),
            "README.md's test has `{line}`, and fixture.rs does not: change both"
        );
    }
}
