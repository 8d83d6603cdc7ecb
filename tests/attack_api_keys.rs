mod common;
#[allow(unused_imports)]
use common::kafka::admin;
#[allow(unused_imports)]
use common::ws::{upgrade_raw, WsClient};
#[allow(unused_imports)]
use common::*;
