//! The run-config parser with `--set` overrides: any text and overrides give a config or an
//! error, never a panic; a config that parses survives its own TOML round trip unchanged.
#![no_main]
mod common;
use libfuzzer_sys::fuzz_target;
use samix::config::TrainConfig;

fuzz_target!(|data: &[u8]| {
    // `<config text>\0<override>\n<override>...`
    let text = String::from_utf8_lossy(data);
    let (config, sets) = text.split_once('\0').unwrap_or((&text, ""));
    let overrides: Vec<String> = sets.lines().filter(|l| !l.is_empty()).map(String::from).collect();
    if let Ok(cfg) = TrainConfig::parse(config, &overrides) {
        let written = cfg.to_toml().expect("a parsed config serialises");
        let again = TrainConfig::parse(&written, &[]).expect("a written config parses");
        assert_eq!(again.to_toml().expect("serialises"), written, "round trip changed the config");
    }
});
