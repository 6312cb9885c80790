//! rend in a fleet: three rend nodes, each with its own memcached and its own
//! L2 directory, behind one twemproxy (nutcracker) pool built from
//! `fixtures/nutcracker.yml`; and the tools' `--server` ketama over the same
//! nodes. rend is a per-node sidecar: the ring lives in the router or the
//! client, and both must put a key on the same node.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{free_port, wait_for, Conn, Memcached, Rend};
use rend::tools::ketama::Continuum;
use rend::tools::workload::{KeyDist, KeyGen};

const SETGET: &str = env!("CARGO_BIN_EXE_setget");
/// The names the pool and the tools hash (fixtures/nutcracker.yml).
const NAMES: [&str; 3] = ["node1", "node2", "node3"];

/// One cache node: rend in l1-l2 on a fixed port, its memcached, its L2.
struct Node {
    mc: Memcached,
    l2: tempfile::TempDir,
    port: u16,
    rend: Option<Rend>,
}

impl Node {
    fn start() -> Node {
        let mut node = Node {
            mc: Memcached::start(),
            l2: tempfile::tempdir().unwrap(),
            port: free_port(),
            rend: None,
        };
        node.launch();
        node
    }

    /// Start (or restart) rend on this node's port, memcached and L2.
    fn launch(&mut self) {
        let args: Vec<String> = [
            "--listen",
            &self.addr(),
            "--orca",
            "l1-l2",
            "--l1",
            &self.mc.l1_arg(),
            "--l2-path",
            &self.l2.path().display().to_string(),
            "--batch-listen",
            "off",
            "--metrics-listen",
            "off",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        self.rend = Some(Rend::start_args(&args));
    }

    /// SIGKILL rend (memcached and the L2 files stay).
    fn kill(&mut self) {
        let mut rend = self.rend.take().expect("running");
        rend.child.kill().unwrap();
        rend.child.wait().unwrap();
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn conn(&self) -> Conn {
        Conn::tcp(&self.addr())
    }
}

/// nutcracker with the fixture's pool over `nodes`.
struct Nutcracker {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Nutcracker {
    fn start(nodes: &[Node]) -> Nutcracker {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/nutcracker.yml");
        let port = free_port();
        let mut conf = std::fs::read_to_string(fixture).expect("fixtures/nutcracker.yml");
        conf = conf.replace("{listen}", &port.to_string());
        for (i, n) in nodes.iter().enumerate() {
            conf = conf.replace(&format!("{{node{}}}", i + 1), &n.port.to_string());
        }
        assert!(!conf.contains('{'), "every placeholder filled: {conf}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nutcracker.yml");
        std::fs::write(&path, conf).unwrap();
        let check = Command::new("nutcracker")
            .arg("-t")
            .arg("-c")
            .arg(&path)
            .output()
            .expect("nutcracker (apt-get install nutcracker)");
        assert!(
            check.status.success(),
            "nutcracker -t: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let child = Command::new("nutcracker")
            .arg("-c")
            .arg(&path)
            .args(["-s", &free_port().to_string(), "-a", "127.0.0.1"])
            .arg("-o")
            .arg(dir.path().join("nutcracker.log"))
            .arg("-p")
            .arg(dir.path().join("nutcracker.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nutcracker");
        wait_for(Duration::from_secs(5), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .expect("nutcracker listening");
        Nutcracker {
            child,
            port,
            _dir: dir,
        }
    }

    fn conn(&self) -> Conn {
        Conn::tcp(&format!("127.0.0.1:{}", self.port))
    }
}

impl Drop for Nutcracker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value key `i` is written with: its own name in it, and a length that
/// varies with `i`, so a value returned for the wrong key cannot pass.
fn value_of(key: &str, i: usize) -> String {
    format!("{key}|{}", "v".repeat(i % 300))
}

fn get(c: &mut Conn, key: &str) -> String {
    c.get_reply(format!("get {key}\r\n").as_bytes())
}

fn hit(key: &str, value: &str) -> String {
    format!("VALUE {key} 0 {}\r\n{value}\r\nEND\r\n", value.len())
}

#[test]
fn nutcracker_routes_by_ketama_and_a_lost_node_costs_only_its_keys() {
    let mut nodes: Vec<Node> = (0..3).map(|_| Node::start()).collect();
    let proxy = Nutcracker::start(&nodes);
    let ring = Continuum::new(&NAMES.map(String::from));
    let keys: Vec<String> = (0..600).map(|i| format!("fleet:{i}")).collect();

    let mut c = proxy.conn();
    for (i, k) in keys.iter().enumerate() {
        let v = value_of(k, i);
        let reply = c.line(format!("set {k} 0 0 {}\r\n{v}\r\n", v.len()).as_bytes());
        assert_eq!(reply, "STORED\r\n", "{k}");
    }

    // Every key is on the node the tools' ketama names, and only there.
    let mut direct: Vec<Conn> = nodes.iter().map(Node::conn).collect();
    let mut per_node = [0usize; 3];
    for (i, k) in keys.iter().enumerate() {
        let home = ring.server_for(k.as_bytes());
        per_node[home] += 1;
        for (j, d) in direct.iter_mut().enumerate() {
            let want = if j == home {
                hit(k, &value_of(k, i))
            } else {
                "END\r\n".to_string()
            };
            assert_eq!(get(d, k), want, "{k} on node {j}; ketama says {home}");
        }
    }
    assert!(per_node.iter().all(|&n| n > 100), "{per_node:?}");

    // SIGKILL node 2: the others' keys are served exactly; its own miss or
    // fail, and never come back with another key's value.
    let lost = 1;
    nodes[lost].kill();
    let (mut missed, mut failed) = (0, 0);
    for (i, k) in keys.iter().enumerate() {
        let reply = get(&mut c, k);
        if ring.server_for(k.as_bytes()) != lost {
            assert_eq!(reply, hit(k, &value_of(k, i)), "{k} on a live node");
        } else if reply == "END\r\n" {
            missed += 1;
        } else if reply.starts_with("SERVER_ERROR") || reply.is_empty() {
            failed += 1;
            if reply.is_empty() {
                // nutcracker closed the connection: open another.
                c = proxy.conn();
            }
        } else {
            panic!("{k} of the lost node answered {reply:?}");
        }
    }
    assert_eq!(missed + failed, per_node[lost]);
    eprintln!("lost node's keys: {missed} missed, {failed} failed");

    // Restarted on its L2 directory, the node serves its keys again, through
    // nutcracker once it is back in the ring, and directly.
    nodes[lost].launch();
    let (probe_i, probe) = keys
        .iter()
        .enumerate()
        .find(|(_, k)| ring.server_for(k.as_bytes()) == lost)
        .unwrap();
    wait_for(Duration::from_secs(15), || {
        let mut c = proxy.conn();
        get(&mut c, probe) == hit(probe, &value_of(probe, probe_i))
    })
    .expect("nutcracker routes to the restarted node again");
    let mut c = proxy.conn();
    let mut d = nodes[lost].conn();
    for (i, k) in keys.iter().enumerate() {
        let want = hit(k, &value_of(k, i));
        assert_eq!(get(&mut c, k), want, "{k} through nutcracker");
        if ring.server_for(k.as_bytes()) == lost {
            assert_eq!(get(&mut d, k), want, "{k} on the restarted node");
        }
    }
}

#[test]
fn setget_spreads_keys_evenly_over_named_nodes_and_verifies_them() {
    let nodes: Vec<Node> = (0..3).map(|_| Node::start()).collect();
    const KEYS: u64 = 3000;
    let mut args: Vec<String> = [
        "-w",
        "3",
        "--key-space",
        "3000",
        "--value-size",
        "10-2000",
        "--pipeline",
        "8",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for (name, n) in NAMES.iter().zip(&nodes) {
        args.push("--server".into());
        args.push(format!("{name}={}", n.addr()));
    }
    let out = Command::new(SETGET).args(&args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success());
    assert!(stdout.contains("checked 3000  mismatches 0  misses 0  errors 0"));

    // Count where the keys are, asking every node for every key (100 keys
    // per get), and check each is where ketama puts it.
    let ring = Continuum::new(&NAMES.map(String::from));
    let gen = KeyGen::new(KEYS, KeyDist::Sequential, 16).unwrap();
    let keys: Vec<String> = (0..KEYS)
        .map(|i| String::from_utf8(gen.key(i).to_vec()).unwrap())
        .collect();
    let mut held = [0u64; 3];
    for (j, n) in nodes.iter().enumerate() {
        let mut c = n.conn();
        for batch in keys.chunks(100) {
            let reply = c.get_reply(format!("get {}\r\n", batch.join(" ")).as_bytes());
            for line in reply.lines().filter(|l| l.starts_with("VALUE ")) {
                let key = line.split(' ').nth(1).unwrap();
                assert_eq!(ring.server_for(key.as_bytes()), j, "{key} on node {j}");
                held[j] += 1;
            }
        }
    }
    assert_eq!(held.iter().sum::<u64>(), KEYS, "{held:?}");
    let even = KEYS as f64 / 3.0;
    for h in held {
        assert!(
            (h as f64 - even).abs() <= 0.10 * even,
            "within 10% of even: {held:?}"
        );
    }
}
