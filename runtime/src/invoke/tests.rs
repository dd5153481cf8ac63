//! The commands on recording delegates: order, rollback, cache.
use super::*;
use crate::delegate::recording::Recording;
use crate::k8s::api::FromKubeconfig;

struct Setup {
    _dir: tempfile::TempDir,
    conf: MultusConf,
    env: CniEnv,
}

fn setup(delegates: &[&str], command: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let conf = format!(
        r#"{{"cniVersion":"1.0.0","name":"multus","cniDir":"{}","delegates":[{}]}}"#,
        dir.path().join("cache").display(),
        delegates.join(",")
    );
    let conf = MultusConf::parse(conf.as_bytes()).unwrap();
    let vars = [
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", "cid"),
        ("CNI_NETNS", "/run/netns/p"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=pod"),
    ];
    let env = CniEnv::from_vars(|k| {
        vars.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    })
    .unwrap();
    Setup {
        _dir: dir,
        conf,
        env,
    }
}

const A: &str = r#"{"cniVersion":"0.4.0","name":"a","type":"pa"}"#;
const B: &str = r#"{"cniVersion":"1.0.0","name":"b","type":"pb"}"#;
const C: &str = r#"{"cniVersion":"1.0.0","name":"c","type":"pc"}"#;

#[test]
fn add_converts_master_result_and_caches_everything() {
    let s = setup(&[A, B], "ADD");
    let r = Recording::default();
    r.respond(
        "pa",
        r#"{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.0.0.2/24"}]}"#,
    );
    let inv = Invocation {
        env: &s.env,
        conf: &s.conf,
        runner: &r,
        cluster: &FromKubeconfig,
        after_result: None,
    };
    let out = inv.add().unwrap();
    assert_eq!(out["cniVersion"], "1.0.0");
    assert!(out["ips"][0].get("version").is_none());
    let calls = r.calls();
    assert_eq!(
        calls.iter().map(|c| c.ifname.as_str()).collect::<Vec<_>>(),
        vec!["eth0", "net1"]
    );
    let f = cache::read(&s.conf.cni_dir, "cid", "eth0")
        .unwrap()
        .unwrap();
    let f = f.file();
    assert!(f.complete);
    assert_eq!(f.delegates.len(), 2);
    assert_eq!(
        f.delegates[0].result.as_ref().unwrap()["ips"][0]["address"],
        "10.0.0.2/24"
    );
    assert_eq!(
        f.delegates[1].cni_args,
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=pod"
    );
}

#[test]
fn failed_add_rolls_back_in_reverse_and_removes_cache() {
    let s = setup(&[A, B, C], "ADD");
    let r = Recording::default();
    r.fail_on("pc", Command::Add, 7, "boom");
    let inv = Invocation {
        env: &s.env,
        conf: &s.conf,
        runner: &r,
        cluster: &FromKubeconfig,
        after_result: None,
    };
    let e = inv.add().unwrap_err();
    assert_eq!(e.code, 7);
    assert!(
        e.msg.contains("ns/pod") && e.msg.contains("net2") && e.msg.contains("boom"),
        "{}",
        e.msg
    );
    let seq = r.sequence();
    assert_eq!(
        seq,
        vec!["ADD pa", "ADD pb", "ADD pc", "DEL pc", "DEL pb", "DEL pa"]
    );
    assert!(cache::read(&s.conf.cni_dir, "cid", "eth0")
        .unwrap()
        .is_none());
}

#[test]
fn del_uses_cache_keeps_going_and_reports_all() {
    let s = setup(&[A, B, C], "ADD");
    let r = Recording::default();
    Invocation {
        env: &s.env,
        conf: &s.conf,
        runner: &r,
        cluster: &FromKubeconfig,
        after_result: None,
    }
    .add()
    .unwrap();
    // DEL must use the cached list even when the conf changed.
    let changed = setup(&[A], "DEL");
    let conf = MultusConf {
        cni_dir: s.conf.cni_dir.clone(),
        ..changed.conf
    };
    let r = Recording::default();
    r.fail("pb", 11, "b down");
    r.fail("pa", 999, "a down");
    let e = Invocation {
        env: &changed.env,
        conf: &conf,
        runner: &r,
        cluster: &FromKubeconfig,
        after_result: None,
    }
    .del()
    .unwrap_err();
    let seq: Vec<_> = r.calls().iter().map(|c| c.plugin_type.clone()).collect();
    assert_eq!(seq, vec!["pc", "pb", "pa"]);
    assert!(
        e.msg.contains("b down") && e.msg.contains("a down"),
        "{}",
        e.msg
    );
    assert_eq!(e.code, 11);
    assert!(
        cache::read(&conf.cni_dir, "cid", "eth0").unwrap().is_some(),
        "cache kept for retry"
    );
    let r = Recording::default();
    let inv = Invocation {
        env: &changed.env,
        conf: &conf,
        runner: &r,
        cluster: &FromKubeconfig,
        after_result: None,
    };
    inv.del().unwrap();
    assert!(cache::read(&conf.cni_dir, "cid", "eth0").unwrap().is_none());
    // Second DEL: no cache, falls back to the conf, still succeeds.
    inv.del().unwrap();
    assert_eq!(r.calls().last().unwrap().plugin_type, "pa");
}

#[test]
fn add_over_an_interrupted_add_deletes_it_first() {
    let s = setup(&[A, B], "ADD");
    let r = Recording::default();
    let inv = Invocation {
        env: &s.env,
        conf: &s.conf,
        runner: &r,
        cluster: &FromKubeconfig,
        after_result: None,
    };
    inv.add().unwrap();
    inv.add().unwrap();
    let seq = r.sequence();
    assert_eq!(
        seq,
        vec!["ADD pa", "ADD pb", "DEL pb", "DEL pa", "ADD pa", "ADD pb"]
    );
}

#[test]
fn check_needs_cache_and_skips_old_versions() {
    let s = setup(
        &[r#"{"cniVersion":"0.3.1","name":"old","type":"po"}"#, B],
        "CHECK",
    );
    let r = Recording::default();
    let inv = Invocation {
        env: &s.env,
        conf: &s.conf,
        runner: &r,
        cluster: &FromKubeconfig,
        after_result: None,
    };
    assert_eq!(inv.check().unwrap_err().code, 3);
    inv.add().unwrap();
    let r2 = Recording::default();
    Invocation {
        env: &s.env,
        conf: &s.conf,
        runner: &r2,
        cluster: &FromKubeconfig,
        after_result: None,
    }
    .check()
    .unwrap();
    let seq = r2.sequence();
    assert_eq!(seq, vec!["CHECK pb"]);
}

#[test]
fn status_reports_worst() {
    let s = setup(
        &[
            r#"{"cniVersion":"1.1.0","name":"a","type":"pa"}"#,
            r#"{"cniVersion":"1.1.0","name":"b","type":"pb"}"#,
        ],
        "STATUS",
    );
    let r = Recording::default();
    r.fail("pa", 50, "a not ready");
    r.fail("pb", 51, "b degraded");
    let e = Invocation {
        env: &s.env,
        conf: &s.conf,
        runner: &r,
        cluster: &FromKubeconfig,
        after_result: None,
    }
    .status()
    .unwrap_err();
    assert_eq!(e.code, 51);
    assert!(e.msg.contains("a not ready"));
}
