//! Pairing messages, from anyone on the broker: decoded, and handed to a host that opened an
//! exchange and to a joiner that looks for one. Refused or taken, never a panic.
#![no_main]

use continuity::security::pair::{self, Host, Joiner, Party};
use continuity::security::seal;
use continuity_fuzz::{ACCOUNT, paired};

const NOW: u64 = 1_800_000_000_000_000_000;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(msg) = pair::decode(data) else {
        return;
    };
    let p = paired();
    if let Ok((mut host, _hello)) = Host::start(&p.tv, "TV", NOW, 120_000_000_000) {
        let _ = host.handle(NOW, &msg);
        let _ = host.confirm(NOW, true);
    }
    let me = Party {
        device: p.phone.device.clone(),
        name: "Phone".into(),
    };
    if let Ok(mut joiner) = Joiner::new(ACCOUNT, me, seal::public_key(&p.phone.signer)) {
        let _ = joiner.handle(NOW, &msg);
    }
});
