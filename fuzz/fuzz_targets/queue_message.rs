//! Queue messages (SQS bodies, the job table): parsed or refused, and round-tripped.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(job) = serde_json::from_slice::<pipes_core::queue::Job>(data) {
        let text = serde_json::to_string(&job).expect("a job serializes");
        let again: pipes_core::queue::Job = serde_json::from_str(&text).expect("and parses");
        assert_eq!(job, again);
    }
});
