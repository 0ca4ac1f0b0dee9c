//! `env`: a variable that, when set at run time, replaces the URL (and, without an
//! `audience` option, the audience with it).

use cloud_run_grpc_examples::pb;

#[cloud_run_grpc::cloud_run_client(
    host = "bookstore-abc123-ew.a.run.app",
    service = pb::bookstore_cloud_run::Bookstore,
    env = "UI_PASS_BOOKSTORE_URL",
)]
pub struct Bookstore;

#[cloud_run_grpc::cloud_run_client(
    host = "inventory-abc123-ew.a.run.app",
    service = pb::bookstore_cloud_run::Bookstore,
    env = "UI_PASS_INVENTORY_URL",
)]
pub struct Inventory;

fn main() {
    // SAFETY: single-threaded so far; nothing else reads the environment.
    unsafe {
        std::env::set_var("UI_PASS_BOOKSTORE_URL", "http://127.0.0.1:9");
        std::env::remove_var("UI_PASS_INVENTORY_URL");
    }
    let books = Bookstore::new();
    assert_eq!(books.channel().host(), "127.0.0.1:9");
    assert_eq!(books.channel().audience(), "https://127.0.0.1");
    assert_eq!(Bookstore::URL, "https://bookstore-abc123-ew.a.run.app");

    let inventory = Inventory::new();
    assert_eq!(inventory.channel().host(), "inventory-abc123-ew.a.run.app");
    assert_eq!(inventory.channel().audience(), Inventory::AUDIENCE);
}
