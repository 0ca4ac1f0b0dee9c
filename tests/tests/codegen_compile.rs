//! The generated bookstore code compiles with the plain tonic client.

mod pb {
    include!(concat!(env!("OUT_DIR"), "/acme.bookstore.v1.rs"));
}

#[test]
fn bookstore_client_and_messages_exist() {
    fn assert_client<T: Clone>() {}
    assert_client::<pb::bookstore_client::BookstoreClient<()>>();
    let book = pb::Book {
        title: "Dune".into(),
        ..Default::default()
    };
    assert_eq!(book.title, "Dune");
}
