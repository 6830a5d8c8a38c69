//! FHIRPath evaluation speed: the compiled fast path against the general evaluator and parsing,
//! on a sample Patient, with a clone of the same Patient as the baseline.
//!
//! ```sh
//! cargo run --release -p fhirlake-fhir --example fhirpath_bench
//! ```

use std::hint::black_box;
use std::time::Instant;

use fhirlake_fhir::fhirpath::Expression;
use serde_json::json;

const ITERATIONS: u32 = 200_000;

fn nanos_per_iteration(mut work: impl FnMut()) -> f64 {
    let started = Instant::now();
    for _ in 0..ITERATIONS {
        work();
    }
    started.elapsed().as_secs_f64() * 1e9 / f64::from(ITERATIONS)
}

fn main() {
    let patient = json!({"resourceType": "Patient", "id": "p1", "active": true,
        "identifier": [{"type": {"coding": [{"code": "MR"}]}, "value": "12345"}, {"system": "urn:ssn", "value": "999"}],
        "name": [{"use": "official", "family": "Smith", "given": ["Alice", "A."]}, {"use": "nickname", "given": ["Al"]}],
        "telecom": [{"system": "phone", "value": "555"}, {"system": "email", "value": "a@b"}],
        "gender": "female", "birthDate": "1974-12-25"});
    let baseline = nanos_per_iteration(|| drop(black_box(black_box(&patient).clone())));
    println!("baseline: clone of the sample Patient {baseline:.0} ns");
    for source in ["Patient.name.given", "Patient.name.where(use='official').given", "Patient.telecom.where(system='email')"] {
        let expression = Expression::parse(source).expect("a valid expression");
        let fast = nanos_per_iteration(|| drop(black_box(expression.evaluate(black_box(&patient)))));
        let general = nanos_per_iteration(|| drop(black_box(expression.evaluate_general(black_box(&patient)))));
        let parse = nanos_per_iteration(|| drop(black_box(Expression::parse(black_box(source)))));
        println!(
            "{source}: evaluate {fast:.0} ns (compiled: {}), general evaluator {general:.0} ns, parse {parse:.0} ns",
            expression.is_compiled()
        );
    }
}
