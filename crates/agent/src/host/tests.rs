//! Unit tests of host discovery: what a `--fake-gpus` spec replaces and what is
//! measured (NVML, sysinfo, the disk holding the data dir), the errors naming bad
//! configuration, and the printed inventory.

use std::collections::BTreeMap;
use std::path::Path;

use gantry_types::protocol::RunSpec;

use gantry_types::node::{GpuSample, InventoryGpu};

use super::*;

fn run_on_gpus(gpu_indices: Vec<u32>) -> RunSpec {
    RunSpec {
        image: "busybox".into(),
        tag: "latest".into(),
        registry_host: None,
        registry_user: None,
        registry_secret: None,
        env: BTreeMap::new(),
        ports: Vec::new(),
        allowed_ips: Vec::new(),
        volumes: Vec::new(),
        gpu_indices,
        gpu_uuids: Vec::new(),
        cpu: 2,
        ram_gb: 4.0,
        max_timeout_run_ms: None,
        max_timeout_start_ms: None,
        account_uuid: None,
    }
}

fn facts() -> HostFacts {
    HostFacts { cpu_name: "AMD EPYC 7B13".into(), cores: 8, ram_gb: 31.3, disk_free_gb: 120.5 }
}

#[test]
fn fake_spec_replaces_gpus_and_only_what_it_names() {
    let fake = parse_fake_items("2xNVIDIA A100:80,ram=128,region=eu-west-1,label.tier=gold,label.pool=a").unwrap();
    let options = HostOptions {
        labels: [("tier".to_string(), "silver".to_string())].into_iter().collect(),
        ..Default::default()
    };
    let d = describe(&facts(), fake.gpus.clone(), Some(&fake), &options);
    assert_eq!(d.inventory.gpus.len(), 2);
    assert_eq!(d.inventory.gpus[1].name, "NVIDIA A100");
    assert_eq!(d.inventory.ram_gb, 128.0, "ram= is set by the spec");
    assert_eq!(d.inventory.cores(), 8, "cpus= is not set: measured");
    assert_eq!(d.inventory.cpus[0].name, "AMD EPYC 7B13");
    assert_eq!(d.inventory.storage_gb, 120.5, "disk= is not set: measured");
    assert_eq!(d.region.as_deref(), Some("eu-west-1"));
    // The --label flag wins over the spec's label; the spec's other labels stay.
    assert_eq!(d.labels.get("tier").map(String::as_str), Some("silver"));
    assert_eq!(d.labels.get("pool").map(String::as_str), Some("a"));
    let flagged = HostOptions { region: Some("us-east-1".into()), ..Default::default() };
    assert_eq!(describe(&facts(), Vec::new(), Some(&fake), &flagged).region.as_deref(), Some("us-east-1"));
}

#[test]
fn without_a_spec_everything_is_measured() {
    let gpu = InventoryGpu { index: 0, uuid: "GPU-1234".into(), name: "NVIDIA L4".into(), vram_gb: 22.5 };
    let options = HostOptions { region: Some("ap-south-1".into()), ..Default::default() };
    let d = describe(&facts(), vec![gpu.clone()], None, &options);
    assert_eq!(d.inventory.gpus, vec![gpu]);
    assert_eq!((d.inventory.cores(), d.inventory.ram_gb, d.inventory.storage_gb), (8, 31.3, 120.5));
    assert_eq!(d.region.as_deref(), Some("ap-south-1"));
    assert!(d.labels.is_empty());
}

#[test]
fn missing_nvml_means_no_gpus_and_a_note() {
    let probe = NvmlProbe::from_init(Err(nvml_wrapper::error::NvmlError::DriverNotLoaded));
    assert!(probe.gpus().is_empty());
    assert!(probe.sample(&[run_on_gpus(vec![0])]).is_empty());
    let note = probe.note().expect("a note");
    assert!(note.contains("NVML could not start"), "{note}");
    // The real library on this machine: either GPUs, or none and a note saying why.
    let real = NvmlProbe::init();
    if real.gpus().is_empty() {
        println!("note: {}", real.note().expect("no GPUs must come with a note"));
    } else {
        assert_eq!(real.sample(&[]).len(), real.gpus().len());
    }
}

#[test]
fn discovery_on_this_host_measures_cpu_ram_and_disk() {
    let probe = HostProbe::discover(&HostOptions {
        fake_gpus: Some("1xNVIDIA RTX 4090:24".into()),
        disk_path: Some("/".into()),
        ..Default::default()
    })
    .unwrap();
    let inv = &probe.description().inventory;
    assert!(inv.cores() > 0, "{inv:?}");
    assert!(inv.ram_gb > 0.0 && inv.storage_gb > 0.0, "{inv:?}");
    assert_ne!(inv.cpus[0].name, "Simulated CPU");
    assert_eq!(inv.gpus.len(), 1);
    assert!(probe.notes().iter().any(|n| n.contains("simulated")), "{:?}", probe.notes());
    let sample = probe.sample(&[run_on_gpus(vec![0])]);
    assert!((0.0..=100.0).contains(&sample.cpu_load), "{sample:?}");
    assert!(sample.ram_free_gb > 0.0 && sample.ram_free_gb <= inv.ram_gb, "{sample:?}");
    assert!(sample.storage_free_gb > 0.0, "{sample:?}");
    // Fake GPUs report the reservation: the held run's GPU is busy.
    assert_eq!(sample.gpus, vec![GpuSample { index: 0, load: 100.0, vram_free_gb: 0.0 }]);
    let idle = probe.sample(&[]);
    assert_eq!(idle.gpus, vec![GpuSample { index: 0, load: 0.0, vram_free_gb: 24.0 }]);
}

#[test]
fn discovery_without_a_spec_asks_nvml() {
    let probe = HostProbe::discover(&HostOptions::default()).unwrap();
    let desc = probe.description();
    if desc.inventory.gpus.is_empty() {
        assert!(probe.notes().iter().any(|n| n.contains("NVML")), "{:?}", probe.notes());
    }
    let default_path = if Path::new("/var/lib/docker").is_dir() { "/var/lib/docker" } else { "/" };
    assert_eq!(probe.disk_path(), Path::new(default_path).canonicalize().unwrap());
}

#[test]
fn bad_configuration_is_an_error_naming_it() {
    let bad_spec = HostOptions { fake_gpus: Some("4090".into()), ..Default::default() };
    assert!(HostProbe::discover(&bad_spec).err().unwrap().starts_with("--fake-gpus: \"4090\""));
    let bad_path =
        HostOptions { disk_path: Some("/no/such/dir".into()), fake_gpus: Some(String::new()), ..Default::default() };
    assert!(HostProbe::discover(&bad_path).err().unwrap().starts_with("disk path /no/such/dir:"));
    assert_eq!(parse_label("tier=gold"), Ok(("tier".into(), "gold".into())));
    assert_eq!(parse_label("empty="), Ok(("empty".into(), String::new())));
    assert!(parse_label("=gold").unwrap_err().contains("\"=gold\""));
    assert!(parse_label("tier").is_err());
}

#[test]
fn disk_is_the_deepest_mount_containing_the_path() {
    let mounts = [Path::new("/"), Path::new("/var"), Path::new("/var/lib/docker")];
    assert_eq!(mount_index(Path::new("/var/lib/docker/overlay2"), mounts), Some(2));
    assert_eq!(mount_index(Path::new("/var/lib/docker"), mounts), Some(2));
    assert_eq!(mount_index(Path::new("/var/library"), mounts), Some(1));
    assert_eq!(mount_index(Path::new("/home"), mounts), Some(0));
    assert_eq!(mount_index(Path::new("/home"), [Path::new("/var")]), None);
    assert_eq!(gb(24 << 30), 24.0);
    assert_eq!(gb(25_757_220_864), 24.0); // an RTX 4090's NVML total
}

#[test]
fn printed_inventory_shows_what_was_found() {
    let fake = parse_fake_items("2xNVIDIA RTX 4090:24").unwrap();
    let options = HostOptions {
        region: Some("eu-west-1".into()),
        labels: [("tier".to_string(), "gold".to_string())].into_iter().collect(),
        ..Default::default()
    };
    let d = describe(&facts(), fake.gpus.clone(), Some(&fake), &options);
    let notes = vec![super::gpu::no_driver_note("libnvidia-ml.so.1: cannot open shared object file")];
    let table = print_inventory(&d, &notes);
    for expected in [
        "eu-west-1",
        "tier=gold",
        "AMD EPYC 7B13 (8 cores)",
        "31.3 GB",
        "120.5 GB free",
        "GPUs:    2",
        "NVIDIA RTX 4090",
        "24.0 GB",
        &d.inventory.gpus[1].uuid,
        "libnvidia-ml.so.1",
    ] {
        assert!(table.contains(expected), "{expected:?} missing from:\n{table}");
    }
    let json = inventory_json(&d, &notes);
    assert_eq!(json["region"], "eu-west-1");
    assert_eq!(json["labels"]["tier"], "gold");
    assert_eq!(json["inventory"]["gpus"][1]["uuid"], d.inventory.gpus[1].uuid.as_str());
    assert_eq!(json["inventory"]["ram_gb"], 31.3);
    assert_eq!(json["notes"][0], notes[0].as_str());
    let bare = print_inventory(&describe(&facts(), Vec::new(), None, &HostOptions::default()), &[]);
    assert!(bare.contains("Region:  (none)") && bare.contains("GPUs:    0") && !bare.contains("INDEX"), "{bare}");
}

#[test]
fn report_prints_the_discovered_host() {
    let options = HostOptions {
        fake_gpus: Some("1xNVIDIA H100:80".into()),
        region: Some("eu-west-1".into()),
        disk_path: Some("/".into()),
        ..Default::default()
    };
    let table = inventory_report(&options, false).unwrap();
    assert!(table.contains("NVIDIA H100") && table.contains("80.0 GB") && table.contains("eu-west-1"), "{table}");
    let json: serde_json::Value = serde_json::from_str(&inventory_report(&options, true).unwrap()).unwrap();
    assert_eq!(json["inventory"]["gpus"][0]["name"], "NVIDIA H100");
    assert!(json["inventory"]["ram_gb"].as_f64().unwrap() > 0.0);
    assert!(inventory_report(&HostOptions { fake_gpus: Some("x".into()), ..Default::default() }, false).is_err());
}

#[test]
fn samples_sent_are_never_negative_or_not_numbers() {
    let raw = HardwareSample {
        cpu_load: 100.4,
        ram_free_gb: -0.5,
        storage_free_gb: f64::NAN,
        gpus: vec![GpuSample { index: 0, load: -1.0, vram_free_gb: f64::INFINITY }],
    };
    let clean = sanitize_sample(raw);
    assert_eq!((clean.cpu_load, clean.ram_free_gb, clean.storage_free_gb), (100.0, 0.0, 0.0));
    assert_eq!((clean.gpus[0].load, clean.gpus[0].vram_free_gb), (0.0, 0.0));
    let fine = HardwareSample { cpu_load: 12.5, ram_free_gb: 3.0, storage_free_gb: 40.0, gpus: vec![] };
    assert_eq!(sanitize_sample(fine.clone()), fine);
}
