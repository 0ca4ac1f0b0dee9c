//! `service` takes any type with `fn new(CloudRunChannel) -> Self`, not only generated ones;
//! a private struct that uses only `new()` compiles without a warning.
#![deny(warnings)]

use cloud_run_grpc::CloudRunChannel;

mod api {
    pub struct Wrapper {
        channel: cloud_run_grpc::CloudRunChannel,
    }

    impl Wrapper {
        pub fn new(channel: cloud_run_grpc::CloudRunChannel) -> Self {
            Self { channel }
        }

        pub fn target(&self) -> &str {
            self.channel.host()
        }
    }
}

#[cloud_run_grpc::cloud_run_client(host = "inventory-xyz789-uc.a.run.app", service = api::Wrapper)]
struct Inventory;

fn main() {
    let inventory = Inventory::new();
    assert_eq!(inventory.target(), "inventory-xyz789-uc.a.run.app");

    let channel = CloudRunChannel::builder("elsewhere.example.com")
        .build()
        .unwrap();
    let elsewhere = Inventory::with_channel(channel);
    assert_eq!(elsewhere.target(), "elsewhere.example.com");
}
