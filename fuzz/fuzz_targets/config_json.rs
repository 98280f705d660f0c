//! `ModelConfig::from_json` on any text: an error, or a config whose derived sizes compute
//! without overflow or panic and that survives a JSON round trip unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nextscale::ModelConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(json) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = ModelConfig::from_json(json) else {
        return;
    };
    let _ = (config.seq_len(), config.latent_size(), config.num_phi());
    let _ = config.default_sampling();
    let again = ModelConfig::from_json(&config.to_json()).expect("a valid config round-trips");
    assert_eq!(again, config);
});
