// What a `Bookstore` struct has whatever its `service` or `client`: `new()`, the constants,
// the channel, `Clone`, `Default` and `Debug`. A case without a usable `service` or `client`
// includes it after its mistake; it adds no error to the case's one.
fn main() {
    let books = Bookstore::new();
    let _constants: [&str; 3] = [Bookstore::HOST, Bookstore::URL, Bookstore::AUDIENCE];
    let _channel: &cloud_run_grpc::CloudRunChannel = books.channel();
    let _again = Bookstore::with_channel(books.channel().clone());
    let _default = Bookstore::default();
    println!("{:?}", books.clone());
}
