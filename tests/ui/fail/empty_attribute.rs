// With no arguments at all, one error says what a minimal attribute looks like, however much
// code uses the struct.
#[cloud_run_grpc::cloud_run_client]
pub struct Bookstore;

fn main() {
    let books = Bookstore::new();
    let _constants: [&str; 3] = [Bookstore::HOST, Bookstore::URL, Bookstore::AUDIENCE];
    let _channel: &cloud_run_grpc::CloudRunChannel = books.channel();
    let _again = Bookstore::with_channel(books.channel().clone());
    let _default = Bookstore::default();
    println!("{:?}", books.clone());
}
