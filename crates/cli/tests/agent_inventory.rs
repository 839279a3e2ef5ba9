//! `gantry agent --print-inventory`: what an operator runs on a node before it joins. It needs
//! no server and no key, and on a machine without an NVIDIA driver says so instead of failing.

use std::process::Command;

const GANTRY: &str = env!("CARGO_BIN_EXE_gantry");

fn gantry_agent(args: &[&str]) -> std::process::Output {
    Command::new(GANTRY)
        .arg("agent")
        .args(args)
        .env_remove("GANTRY_PUBLIC_KEY")
        .env_remove("GANTRY_SECRET_KEY")
        .output()
        .expect("gantry runs")
}

#[test]
fn print_inventory_json_shows_fake_gpus_and_the_measured_host() {
    let out = gantry_agent(&["--print-inventory", "--json", "--fake-gpus", "2xNVIDIA RTX 4090:24,region=eu-west-1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(json["region"], "eu-west-1");
    let gpus = json["inventory"]["gpus"].as_array().unwrap();
    assert_eq!(gpus.len(), 2);
    assert_eq!(gpus[1]["name"], "NVIDIA RTX 4090");
    assert_eq!(gpus[1]["vram_gb"], 24.0);
    // CPUs, RAM and disk come from this machine, not the simulated-node defaults.
    assert_ne!(json["inventory"]["cpus"][0]["name"], "Simulated CPU");
    assert!(json["inventory"]["ram_gb"].as_f64().unwrap() > 0.0);
    assert!(json["inventory"]["storage_gb"].as_f64().unwrap() > 0.0);
}

#[test]
fn print_inventory_table_explains_missing_gpus() {
    let out = gantry_agent(&["--print-inventory"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("CPU:") && table.contains("RAM:") && table.contains("GB free"), "{table}");
    // Either NVML found GPUs, or the table says why there are none.
    assert!(
        !table.contains("GPUs:    0")
            || table.contains("NVML could not start")
            || table.contains("NVML reports no GPUs"),
        "{table}"
    );
}

#[test]
fn bad_fake_spec_and_json_without_print_inventory_are_refused() {
    let out = gantry_agent(&["--print-inventory", "--fake-gpus", "4090"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--fake-gpus: \"4090\""));
    let out = gantry_agent(&["--json"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--print-inventory"));
}
