// Without `service` or `client`, the one error says so, and what does not depend on them
// (constructors, constants, the channel, `Clone`, `Default`, `Debug`) is still emitted.
#[cloud_run_grpc::cloud_run_client(host = "bookstore-abc123-ew.a.run.app")]
pub struct Bookstore;

fn main() {
    let books = Bookstore::new();
    let _constants: [&str; 3] = [Bookstore::HOST, Bookstore::URL, Bookstore::AUDIENCE];
    let _channel: &cloud_run_grpc::CloudRunChannel = books.channel();
    let _again = Bookstore::with_channel(books.channel().clone());
    let _default = Bookstore::default();
    println!("{:?}", books.clone());
}
