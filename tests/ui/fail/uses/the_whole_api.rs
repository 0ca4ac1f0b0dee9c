// The API of a `Bookstore` struct with `service = pb::bookstore_cloud_run::Bookstore`, used the
// way a crate would: `new()`, the constants, the channel, `Clone`, `Default`, `Debug` and an
// RPC through `Deref`. A case includes it after its mistake; since the expansion is still
// there, it adds no error to the case's one.
fn main() {
    let books = Bookstore::new();
    let _call = books.create_book(pb::CreateBookRequest::default()); // through `Deref`
    let _constants: [&str; 3] = [Bookstore::HOST, Bookstore::URL, Bookstore::AUDIENCE];
    let _channel: &cloud_run_grpc::CloudRunChannel = books.channel();
    let _again = Bookstore::with_channel(books.channel().clone());
    let _copy = books.clone();
    let _default = Bookstore::default();
    println!("{books:?}");
}
