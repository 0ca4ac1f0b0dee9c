// An attribute with no arguments is one error, however much code uses the struct.
#[cloud_run_grpc::cloud_run_client]
pub struct Bookstore;

fn main() {
    let books = Bookstore::new();
    let _constants: [&str; 3] = [Bookstore::HOST, Bookstore::URL, Bookstore::AUDIENCE];
    let _channel: &cloud_run_grpc::CloudRunChannel = books.channel();
    println!("{:?}", books.clone());
}
