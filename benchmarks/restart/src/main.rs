//! restartbench: restart latency of a supervised service — `kill -9` of the service until its
//! replacement is running — for nbwatch, supervisord, runit (runsv) and s6 (s6-supervise),
//! each supervising the same command in the same run; plus the supervisor's memory while it
//! supervises 50 services (`--rss50`).
//!
//! The service is `/bin/sh -c 'echo $$ > PID && exec sleep 100000'`:
//! "replacement running" means a new pid appeared in the pidfile (read when it is closed) and
//! `/proc/<pid>` exists. See README.md for the method and its caveats.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

type Result<T> = std::result::Result<T, String>;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

const USAGE: &str = "\
restartbench: restart latency (kill -9 until the replacement runs) of nbwatch vs supervisord, runit, s6

usage: restartbench [options]
  --kills N            kills per configuration (default 200)
  --gap MS             pause after a replacement appears before the next kill (default 1200;
                       keep it above 1000: runsv, s6-supervise and supervisord's startsecs=1
                       penalise a service that dies within 1 s of its start)
  --wait inotify|poll  how the harness notices the new pidfile (default inotify: sleeps in
                       poll(2) on an inotify watch of the pidfile's directory, so it takes no
                       CPU from the supervisor; poll: re-reads the pidfile every --poll-us)
  --poll-us US         pidfile polling interval for --wait poll (default 20)
  --deadline-ms MS     a kill without a replacement by then counts as a failure (default 5000)
  --only LIST          comma-separated peers or configurations: nbwatch, supervisord,
                       supervisord-default, supervisord-tuned, runit, s6, s6-default, s6-ready
  --nbwatch PATH       nbwatch binary (nbwatch is skipped without it)
  --supervisord PATH   supervisord (default: from PATH)
  --runsv PATH         runsv (default: from PATH); --runsvdir PATH likewise for --rss50
  --s6-supervise PATH  s6-supervise (default: from PATH); --s6-svscan PATH likewise for --rss50
  --raw FILE           also write every latency as CSV (config,kill,latency_us)
  --rss50              instead of latencies: memory of each supervisor running 50 services
  --services N         number of services for --rss50 (default 50)
  --keep               keep the temporary directories (for debugging)
";

struct Opts {
    kills: usize,
    gap: Duration,
    poll: Duration,
    inotify: bool,
    deadline: Duration,
    only: Option<Vec<String>>,
    nbwatch: Option<PathBuf>,
    supervisord: Option<PathBuf>,
    runsv: Option<PathBuf>,
    runsvdir: Option<PathBuf>,
    s6_supervise: Option<PathBuf>,
    s6_svscan: Option<PathBuf>,
    raw: Option<PathBuf>,
    rss50: bool,
    services: usize,
    keep: bool,
}

fn parse_args() -> Result<Opts> {
    let mut o = Opts {
        kills: 200,
        gap: Duration::from_millis(1200),
        poll: Duration::from_micros(20),
        inotify: true,
        deadline: Duration::from_millis(5000),
        only: None,
        nbwatch: None,
        supervisord: None,
        runsv: None,
        runsvdir: None,
        s6_supervise: None,
        s6_svscan: None,
        raw: None,
        rss50: false,
        services: 50,
        keep: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| format!("{a} needs a value"));
        let num = |s: String| s.parse::<u64>().map_err(|e| format!("{a}: {e}"));
        match a.as_str() {
            "--kills" => o.kills = num(val()?)? as usize,
            "--gap" => o.gap = Duration::from_millis(num(val()?)?),
            "--poll-us" => o.poll = Duration::from_micros(num(val()?)?),
            "--wait" => {
                o.inotify = match val()?.as_str() {
                    "inotify" => true,
                    "poll" => false,
                    w => return Err(format!("--wait {w}: inotify or poll")),
                }
            }
            "--deadline-ms" => o.deadline = Duration::from_millis(num(val()?)?),
            "--only" => o.only = Some(val()?.split(',').map(|s| s.trim().to_string()).collect()),
            "--nbwatch" => o.nbwatch = Some(val()?.into()),
            "--supervisord" => o.supervisord = Some(val()?.into()),
            "--runsv" => o.runsv = Some(val()?.into()),
            "--runsvdir" => o.runsvdir = Some(val()?.into()),
            "--s6-supervise" => o.s6_supervise = Some(val()?.into()),
            "--s6-svscan" => o.s6_svscan = Some(val()?.into()),
            "--raw" => o.raw = Some(val()?.into()),
            "--rss50" => o.rss50 = true,
            "--services" => o.services = num(val()?)? as usize,
            "--keep" => o.keep = true,
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {a}\n{USAGE}")),
        }
    }
    if o.kills == 0 || o.services == 0 {
        return Err("--kills and --services must be > 0".into());
    }
    Ok(o)
}

/// One configuration of one supervisor.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Config {
    Floor,
    SupervisordDefault,
    SupervisordTuned,
    Runit,
    S6,
    S6Ready,
    Nbwatch,
}

impl Config {
    const ALL: [Config; 7] = [
        Config::Floor,
        Config::Nbwatch,
        Config::Runit,
        Config::S6,
        Config::S6Ready,
        Config::SupervisordTuned,
        Config::SupervisordDefault,
    ];

    fn name(self) -> &'static str {
        match self {
            Config::Floor => "floor",
            Config::SupervisordDefault => "supervisord-default",
            Config::SupervisordTuned => "supervisord-tuned",
            Config::Runit => "runit-default",
            Config::S6 => "s6-default",
            Config::S6Ready => "s6-ready",
            Config::Nbwatch => "nbwatch",
        }
    }

    fn peer(self) -> &'static str {
        match self {
            Config::SupervisordDefault | Config::SupervisordTuned => "supervisord",
            Config::Runit => "runit",
            Config::S6 | Config::S6Ready => "s6",
            Config::Nbwatch => "nbwatch",
            Config::Floor => "floor",
        }
    }

    fn note(self) -> &'static str {
        match self {
            Config::Floor => "reference, not a supervisor: restartbench's own loop of fork, exec, waitpid, respawn at once (the cost of the command itself)",
            Config::SupervisordDefault => "startsecs=1 (default), autorestart=unexpected (default), startretries=3 (default)",
            Config::SupervisordTuned => "startsecs=0, autorestart=true, startretries=1000000",
            Config::Runit => "runsv has no restart knob: restarts at once, or after 1 s if the service ran < 1 s; so default = tuned",
            Config::S6 => "s6-supervise, no notification-fd",
            Config::S6Ready => "s6-supervise with notification-fd 3; the command also does `echo >&3` after writing the pidfile (differs from the others)",
            Config::Nbwatch => "one_for_one, intensity 1000000 per 1s",
        }
    }

    fn selected(self, only: &Option<Vec<String>>) -> bool {
        match only {
            None => true,
            Some(list) => list.iter().any(|s| s == self.name() || s == self.peer() || (s == "runit" && self == Config::Runit)),
        }
    }
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| {
        p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
    })
}

fn locate(given: &Option<PathBuf>, name: &str) -> Result<PathBuf> {
    match given {
        Some(p) if p.exists() => Ok(p.canonicalize().map_err(|e| format!("{}: {e}", p.display()))?),
        Some(p) => Err(format!("{name}: {} does not exist", p.display())),
        None => find_in_path(name).ok_or_else(|| format!("{name} not found in PATH (give --{name} PATH)")),
    }
}

// ---------------------------------------------------------------------------------------------
// /proc helpers

struct ProcInfo {
    pid: i32,
    ppid: i32,
    start: u64,
    comm: String,
}

fn proc_stat(pid: i32) -> Option<ProcInfo> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let comm = s[open + 1..close].to_string();
    let rest: Vec<&str> = s[close + 1..].split_whitespace().collect();
    // rest[0] = state (field 3), rest[1] = ppid (field 4), rest[19] = starttime (field 22)
    Some(ProcInfo { pid, ppid: rest.get(1)?.parse().ok()?, start: rest.get(19)?.parse().ok()?, comm })
}

fn all_procs() -> Vec<ProcInfo> {
    let Ok(rd) = fs::read_dir("/proc") else { return vec![] };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()).filter_map(proc_stat).collect()
}

/// Every live descendant of `root` (not `root` itself).
fn descendants(root: i32) -> Vec<ProcInfo> {
    let procs = all_procs();
    let mut children: HashMap<i32, Vec<usize>> = HashMap::new();
    for (i, p) in procs.iter().enumerate() {
        children.entry(p.ppid).or_default().push(i);
    }
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        for &i in children.get(&pid).map(|v| v.as_slice()).unwrap_or(&[]) {
            stack.push(procs[i].pid);
            out.push(i);
        }
    }
    let mut procs: Vec<Option<ProcInfo>> = procs.into_iter().map(Some).collect();
    out.into_iter().filter_map(|i| procs[i].take()).collect()
}

fn status_kb(pid: i32, file: &str, key: &str) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].trim().trim_end_matches("kB").trim().parse().ok()
}

fn vm_rss_kb(pid: i32) -> Option<u64> {
    status_kb(pid, "status", "VmRSS:")
}

fn pss_kb(pid: i32) -> Option<u64> {
    status_kb(pid, "smaps_rollup", "Pss:")
}

fn is_zombie(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 1..].trim_start().starts_with('Z')))
        .unwrap_or(false)
}

fn comm(pid: i32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm")).ok().map(|s| s.trim().to_string())
}

// ---------------------------------------------------------------------------------------------
// A supervisor under test: its temp dir and its process (group); torn down on drop.

struct Supervisor {
    label: String,
    dir: PathBuf,
    child: Option<Child>,
    keep: bool,
}

impl Supervisor {
    fn new_dir(label: &str, keep: bool) -> Result<Supervisor> {
        let dir = std::env::temp_dir().join(format!("restartbench-{}-{label}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Supervisor { label: label.to_string(), dir, child: None, keep })
    }

    fn spawn(&mut self, program: &Path, args: &[&str]) -> Result<()> {
        let log = fs::File::create(self.dir.join("supervisor.log")).map_err(|e| e.to_string())?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(program)
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", program.display()))?;
        self.child = Some(child);
        Ok(())
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(-1)
    }

    /// Err if the supervisor has exited (with the tail of its log).
    fn check_alive(&mut self) -> Result<()> {
        if let Some(c) = self.child.as_mut() {
            if let Ok(Some(st)) = c.try_wait() {
                let log = fs::read_to_string(self.dir.join("supervisor.log")).unwrap_or_default();
                let tail: String = log.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
                return Err(format!("{} exited ({st}); its log ends:\n{tail}", self.label));
            }
        }
        Ok(())
    }

    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.dir.join("supervisor.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id() as i32;
            // Collect the whole tree first: services may sit in their own session/process group
            // and would be reparented (out of our sight) once their supervisor is gone.
            let tree = descendants(pid);
            unsafe { libc::kill(-pid, libc::SIGTERM) };
            let until = Instant::now() + Duration::from_secs(3);
            while Instant::now() < until {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            let _ = child.wait();
            for p in tree.iter().chain(descendants(pid).iter()) {
                // Only the very process we saw (pid + start time), never a recycled pid.
                if proc_stat(p.pid).map(|q| q.start == p.start).unwrap_or(false) {
                    unsafe { libc::kill(p.pid, libc::SIGKILL) };
                }
            }
            // Wait until the tree is gone, so it cannot disturb the next configuration.
            let until = Instant::now() + Duration::from_secs(5);
            while Instant::now() < until
                && tree.iter().any(|p| proc_stat(p.pid).map(|q| q.start == p.start).unwrap_or(false) && !is_zombie(p.pid))
            {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if self.keep {
            eprintln!("kept {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration files

fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn write(path: &Path, text: &str, mode: u32) -> Result<()> {
    fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| format!("{}: {e}", path.display()))
}

/// The shell body of the service: the pid in one write (the harness reads it on close), then
/// exec sleep (pid unchanged). No helper process: the command costs one sh start-up.
fn body(pidfile: &Path, notify_fd3: bool) -> String {
    let p = pidfile.display();
    if notify_fd3 {
        format!("echo $$ > {p} && echo >&3 && exec sleep 100000 3>&-")
    } else {
        format!("echo $$ > {p} && exec sleep 100000")
    }
}

/// A service: name and the shell body run by `/bin/sh` (`-c` for nbwatch and supervisord, a
/// `#!/bin/sh` run script for runsv and s6-supervise: one /bin/sh exec either way).
struct Svc {
    name: String,
    body: String,
}

fn nbwatch_files(dir: &Path, svcs: &[Svc]) -> Result<PathBuf> {
    let d = dir.display().to_string();
    fs::create_dir_all(dir.join("trees")).map_err(|e| e.to_string())?;
    let cfg = format!(
        "[node]\nname = \"bench\"\ndata_dir = {}\n\n[gossip]\nlisten = \"127.0.0.1:0\"\n\n[api]\nlisten = \"127.0.0.1:0\"\n\n[supervision]\ntrees = {}\n",
        toml_str(&format!("{d}/data")),
        toml_str(&format!("{d}/trees"))
    );
    let mut tree = String::from("name = \"bench\"\nstrategy = \"one_for_one\"\nintensity = 1000000\nperiod = \"1s\"\n");
    for s in svcs {
        let _ = write!(tree, "\n[[children]]\nname = {}\ncommand = [\"/bin/sh\", \"-c\", {}]\n", toml_str(&s.name), toml_str(&s.body));
    }
    write(&dir.join("trees/bench.toml"), &tree, 0o644)?;
    let path = dir.join("nbwatch.toml");
    write(&path, &cfg, 0o644)?;
    Ok(path)
}

fn supervisord_files(dir: &Path, svcs: &[Svc], tuned: bool) -> Result<PathBuf> {
    let d = dir.display();
    let mut cfg = format!(
        "[supervisord]\nnodaemon=true\nlogfile={d}/supervisord.log\npidfile={d}/supervisord.pid\nchildlogdir={d}\nloglevel=warn\n"
    );
    for s in svcs {
        // supervisord splits the command with shlex and %-interpolates it.
        let _ = write!(cfg, "\n[program:{}]\ncommand=/bin/sh -c '{}'\n", s.name, s.body.replace('%', "%%"));
        if tuned {
            cfg.push_str("startsecs=0\nautorestart=true\nstartretries=1000000\n");
        }
    }
    let path = dir.join("supervisord.conf");
    write(&path, &cfg, 0o644)?;
    Ok(path)
}

/// A runit/s6 service directory with a `run` script; `notification_fd` for s6 readiness.
fn service_dir(dir: &Path, s: &Svc, notification_fd: bool) -> Result<PathBuf> {
    let sd = dir.join(&s.name);
    fs::create_dir_all(&sd).map_err(|e| e.to_string())?;
    write(&sd.join("run"), &format!("#!/bin/sh\n{}\n", s.body), 0o755)?;
    if notification_fd {
        write(&sd.join("notification-fd"), "3\n", 0o644)?;
    }
    Ok(sd)
}

// ---------------------------------------------------------------------------------------------
// Starting a configuration

struct Bins {
    nbwatch: Option<PathBuf>,
    supervisord: Result<PathBuf>,
    runsv: Result<PathBuf>,
    runsvdir: Result<PathBuf>,
    s6_supervise: Result<PathBuf>,
    s6_svscan: Result<PathBuf>,
}

fn need(b: &Result<PathBuf>) -> Result<&Path> {
    b.as_deref().map_err(|e| e.clone())
}

/// Starts `cfg` supervising `svcs` (built from the temp dir by `make`). With more than one
/// service, runit and s6 run under runsvdir / s6-svscan (one runsv / s6-supervise each).
fn start(cfg: Config, bins: &Bins, keep: bool, n: usize, make: impl Fn(&Path, usize) -> Svc) -> Result<Supervisor> {
    let mut sup = Supervisor::new_dir(cfg.name(), keep)?;
    let dir = sup.dir.clone();
    let svcs: Vec<Svc> = (0..n).map(|i| make(&dir, i)).collect();
    match cfg {
        Config::Floor => {
            if n != 1 {
                return Err("floor supervises one service only".into());
            }
            let me = std::env::current_exe().map_err(|e| e.to_string())?;
            sup.spawn(&me, &["--floor-supervise", &svcs[0].body])?;
        }
        Config::Nbwatch => {
            let bin = bins.nbwatch.clone().ok_or("nbwatch: no --nbwatch PATH given")?;
            let conf = nbwatch_files(&dir, &svcs)?;
            sup.spawn(&bin, &["run", "--config", conf.to_str().unwrap()])?;
        }
        Config::SupervisordDefault | Config::SupervisordTuned => {
            let bin = need(&bins.supervisord)?.to_path_buf();
            let conf = supervisord_files(&dir, &svcs, cfg == Config::SupervisordTuned)?;
            sup.spawn(&bin, &["-n", "-c", conf.to_str().unwrap()])?;
        }
        Config::Runit if n == 1 => {
            let bin = need(&bins.runsv)?.to_path_buf();
            let sd = service_dir(&dir, &svcs[0], false)?;
            sup.spawn(&bin, &[sd.to_str().unwrap()])?;
        }
        Config::Runit => {
            let bin = need(&bins.runsvdir)?.to_path_buf();
            let scan = dir.join("service");
            for s in &svcs {
                service_dir(&scan, s, false)?;
            }
            sup.spawn(&bin, &[scan.to_str().unwrap()])?;
        }
        Config::S6 | Config::S6Ready if n == 1 => {
            let bin = need(&bins.s6_supervise)?.to_path_buf();
            let sd = service_dir(&dir, &svcs[0], cfg == Config::S6Ready)?;
            sup.spawn(&bin, &[sd.to_str().unwrap()])?;
        }
        Config::S6 | Config::S6Ready => {
            let bin = need(&bins.s6_svscan)?.to_path_buf();
            let scan = dir.join("service");
            for s in &svcs {
                service_dir(&scan, s, cfg == Config::S6Ready)?;
            }
            sup.spawn(&bin, &[scan.to_str().unwrap()])?;
        }
    }
    Ok(sup)
}

// ---------------------------------------------------------------------------------------------
// Latency

fn read_pid(path: &Path) -> Option<i32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Waits until the pidfile names a live process other than `old` that has exec'd `sleep`.
fn wait_service(sup: &mut Supervisor, pidfile: &Path, old: Option<i32>, timeout: Duration) -> Result<i32> {
    let until = Instant::now() + timeout;
    loop {
        if let Some(p) = read_pid(pidfile) {
            if Some(p) != old && comm(p).as_deref() == Some("sleep") {
                return Ok(p);
            }
        }
        sup.check_alive()?;
        if STOP.load(Ordering::SeqCst) {
            return Err("interrupted".into());
        }
        if Instant::now() > until {
            return Err(format!(
                "{}: no running service in the pidfile after {:?} (does it start services?); its log ends:\n{}",
                sup.label,
                timeout,
                sup.log_tail()
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// An inotify watch for renames into the pidfile's directory: the harness sleeps in poll(2)
/// until the service's `mv` lands, instead of spinning next to the supervisor on 2 cores.
struct Inotify(libc::c_int);

impl Inotify {
    fn new(dir: &Path) -> Result<Inotify> {
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        if fd < 0 {
            return Err(format!("inotify_init1: {}", std::io::Error::last_os_error()));
        }
        let me = Inotify(fd);
        let c = std::ffi::CString::new(dir.to_str().ok_or("non-UTF-8 dir")?).map_err(|e| e.to_string())?;
        if unsafe { libc::inotify_add_watch(fd, c.as_ptr(), libc::IN_CLOSE_WRITE) } < 0 {
            return Err(format!("inotify_add_watch: {}", std::io::Error::last_os_error()));
        }
        Ok(me)
    }

    /// Sleeps until an event or `timeout`, then drains the queue.
    fn wait(&self, timeout: Duration) {
        let mut pfd = libc::pollfd { fd: self.0, events: libc::POLLIN, revents: 0 };
        let ms = timeout.as_millis().min(1000) as libc::c_int;
        unsafe { libc::poll(&mut pfd, 1, ms) };
        let mut buf = [0u8; 4096];
        while unsafe { libc::read(self.0, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    }
}

impl Drop for Inotify {
    fn drop(&mut self) {
        unsafe { libc::close(self.0) };
    }
}

struct Outcome {
    lat: Vec<Duration>,
    failures: usize,
    rss_before: Option<u64>,
    rss_after: Option<u64>,
}

fn measure(cfg: Config, bins: &Bins, o: &Opts) -> Result<Outcome> {
    let mut sup = start(cfg, bins, o.keep, 1, |dir, _| Svc {
        name: "victim".into(),
        body: body(&dir.join("victim.pid"), cfg == Config::S6Ready),
    })?;
    let pidfile = sup.dir.join("victim.pid");
    let mut pid = wait_service(&mut sup, &pidfile, None, Duration::from_secs(20))?;
    let rss_before = vm_rss_kb(sup.pid());
    let watch = if o.inotify { Some(Inotify::new(&sup.dir)?) } else { None };
    let mut lat = Vec::with_capacity(o.kills);
    let mut failures = 0;
    for i in 0..o.kills {
        std::thread::sleep(o.gap);
        if let Some(w) = &watch {
            w.wait(Duration::ZERO); // drop stale events
        }
        if STOP.load(Ordering::SeqCst) {
            return Err("interrupted".into());
        }
        sup.check_alive()?;
        // The current service, exec'd into sleep (it should be the one we saw appear).
        if read_pid(&pidfile) != Some(pid) || comm(pid).as_deref() != Some("sleep") {
            pid = wait_service(&mut sup, &pidfile, None, Duration::from_secs(5))?;
        }
        let t0 = Instant::now();
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let old = pid;
        loop {
            if let Some(p) = read_pid(&pidfile) {
                if p != old && alive(p) {
                    lat.push(t0.elapsed());
                    pid = p;
                    break;
                }
            }
            if t0.elapsed() > o.deadline {
                failures += 1;
                eprintln!("  {}: kill {i}: no replacement within {:?}", cfg.name(), o.deadline);
                pid = wait_service(&mut sup, &pidfile, Some(old), Duration::from_secs(30))?;
                break;
            }
            match &watch {
                Some(w) => w.wait(o.deadline.saturating_sub(t0.elapsed())),
                None => std::thread::sleep(o.poll),
            }
        }
        if (i + 1) % 50 == 0 {
            eprintln!("  {}: {} kills", cfg.name(), i + 1);
        }
    }
    let rss_after = vm_rss_kb(sup.pid());
    Ok(Outcome { lat, failures, rss_before, rss_after })
}

fn pct(sorted: &[Duration], q: f64) -> Duration {
    // Nearest rank.
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> String {
    let v = d.as_secs_f64() * 1e3;
    if v >= 100.0 { format!("{v:.0}") } else if v >= 10.0 { format!("{v:.1}") } else { format!("{v:.2}") }
}

fn kb(v: Option<u64>) -> String {
    v.map(|k| format!("{:.1} MiB", k as f64 / 1024.0)).unwrap_or_else(|| "?".into())
}

// ---------------------------------------------------------------------------------------------
// Memory with 50 services

fn rss_many(cfg: Config, bins: &Bins, o: &Opts) -> Result<String> {
    let mut sup = start(cfg, bins, o.keep, o.services, |_, i| Svc { name: format!("s{i:02}"), body: "exec sleep 100000".into() })?;
    let root = sup.pid();
    let until = Instant::now() + Duration::from_secs(60);
    let running = loop {
        let n = descendants(root).iter().filter(|p| p.comm == "sleep").count();
        if n >= o.services {
            break n;
        }
        sup.check_alive()?;
        if STOP.load(Ordering::SeqCst) {
            return Err("interrupted".into());
        }
        if Instant::now() > until {
            return Err(format!("{}: only {n} of {} services running after 60 s; log ends:\n{}", cfg.name(), o.services, sup.log_tail()));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Let start-up allocations settle (supervisord's startsecs, nbwatch's first metrics).
    std::thread::sleep(Duration::from_secs(6));
    let mut procs = vec![root];
    procs.extend(descendants(root).iter().filter(|p| p.comm != "sleep").map(|p| p.pid));
    let rss: u64 = procs.iter().filter_map(|&p| vm_rss_kb(p)).sum();
    let pss: u64 = procs.iter().filter_map(|&p| pss_kb(p)).sum();
    Ok(format!(
        "{:<20} {:>8} {:>6} {:>12} {:>14} {:>14}",
        cfg.peer(),
        running,
        procs.len(),
        kb(vm_rss_kb(root)),
        kb(Some(rss)),
        kb(Some(pss))
    ))
}

// ---------------------------------------------------------------------------------------------

fn sh(cmd: &str) -> String {
    Command::new("/bin/sh")
        .args(["-c", cmd])
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn machine() -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_default();
    let ncpu = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    format!("machine: {ncpu} cpus, {cpu}, kernel {}, {}", sh("uname -r"), sh("date -u '+%Y-%m-%d %H:%M UTC'"))
}

/// The `floor` reference: spawn `/bin/sh -c BODY` (own process group, like the supervisors'
/// services), wait for it, spawn again at once; forever (ended by SIGTERM/SIGKILL).
fn floor_supervise(body: &str) -> ! {
    loop {
        match Command::new("/bin/sh").args(["-c", body]).stdin(Stdio::null()).process_group(0).spawn() {
            Ok(mut c) => {
                let _ = c.wait();
            }
            Err(e) => {
                eprintln!("floor: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn main() {
    {
        let argv: Vec<String> = std::env::args().collect();
        if argv.len() == 3 && argv[1] == "--floor-supervise" {
            floor_supervise(&argv[2]);
        }
    }
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        // Precise short sleeps for the polling loop (default slack is 50 µs).
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
    let bins = Bins {
        nbwatch: o.nbwatch.as_ref().map(|p| p.canonicalize().unwrap_or(p.clone())),
        supervisord: locate(&o.supervisord, "supervisord"),
        runsv: locate(&o.runsv, "runsv"),
        runsvdir: locate(&o.runsvdir, "runsvdir"),
        s6_supervise: locate(&o.s6_supervise, "s6-supervise"),
        s6_svscan: locate(&o.s6_svscan, "s6-svscan"),
    };
    println!("{}", machine());
    if let Ok(p) = &bins.supervisord {
        println!("supervisord {} ({})", sh(&format!("'{}' --version", p.display())), p.display());
    }
    for pkg in ["runit", "s6"] {
        let v = sh(&format!("dpkg-query -W -f '${{Version}}' {pkg}"));
        if !v.is_empty() {
            println!("{pkg} {v} (Debian package)");
        }
    }
    if let Some(p) = &bins.nbwatch {
        println!("nbwatch {}", p.display());
    }
    let mut configs: Vec<Config> = Config::ALL.into_iter().filter(|c| c.selected(&o.only)).collect();
    if o.rss50 {
        configs.retain(|&c| c != Config::SupervisordTuned && c != Config::S6Ready && c != Config::Floor);
    }
    if o.only.is_none() && bins.nbwatch.is_none() {
        configs.retain(|&c| c != Config::Nbwatch);
        println!("(nbwatch skipped: no --nbwatch PATH)");
    }
    let mut failed = false;

    if o.rss50 {
        println!("\nmemory while supervising {} services (`sleep 100000` each), 6 s after all run", o.services);
        println!("RSS sum / PSS sum: over the supervisor and its non-service descendants (runsvdir + runsv's, s6-svscan + s6-supervise's)");
        println!("{:<20} {:>8} {:>6} {:>12} {:>14} {:>14}", "supervisor", "services", "procs", "root RSS", "RSS sum", "PSS sum");
        for cfg in configs {
            match rss_many(cfg, &bins, &o) {
                Ok(line) => println!("{line}"),
                Err(e) => {
                    failed = true;
                    println!("{:<20} error: {e}", cfg.peer());
                }
            }
            if STOP.load(Ordering::SeqCst) {
                break;
            }
        }
        std::process::exit(failed as i32);
    }

    println!(
        "\nrestart latency: SIGKILL of the service until a new pid is in its pidfile and alive; {} kills per configuration, {} ms after each replacement appeared; pidfile {}",
        o.kills,
        o.gap.as_millis(),
        if o.inotify { "re-read on each inotify IN_CLOSE_WRITE in its directory".to_string() } else { format!("polled every {} µs", o.poll.as_micros()) }
    );
    let mut raw = String::new();
    let mut table = Vec::new();
    // The same rows as a markdown table (BENCHMARKS.md's generated part reads it).
    let mut markdown = Vec::new();
    for cfg in configs {
        eprintln!("{}: {}", cfg.name(), cfg.note());
        match measure(cfg, &bins, &o) {
            Ok(out) => {
                let mut s = out.lat.clone();
                s.sort();
                for (i, d) in out.lat.iter().enumerate() {
                    let _ = writeln!(raw, "{},{},{}", cfg.name(), i, d.as_micros());
                }
                if s.is_empty() {
                    table.push(format!("{:<20} {:>5} {:>5}  (no sample)", cfg.name(), 0, out.failures));
                } else {
                    // min, p50, p90, p99, max: one set of figures for both tables.
                    let f = [s[0], pct(&s, 0.5), pct(&s, 0.9), pct(&s, 0.99), *s.last().unwrap()].map(ms);
                    let (name, n, fails, rss) = (cfg.name(), s.len(), out.failures, kb(out.rss_after));
                    markdown.push(format!(
                        "| {name} | {n} | {fails} | {} ms | {} ms | {} ms | {} ms | {} ms | {rss} |",
                        f[0], f[1], f[2], f[3], f[4]
                    ));
                    table.push(format!(
                        "{name:<20} {n:>5} {fails:>5} {:>9} {:>9} {:>9} {:>9} {:>9} {rss:>11}",
                        f[0], f[1], f[2], f[3], f[4]
                    ));
                }
                eprintln!("  RSS before {} after {}; load average now {}", kb(out.rss_before), kb(out.rss_after), sh("cut -d' ' -f1-3 /proc/loadavg"));
                println!("{}", table.last().unwrap());
            }
            Err(e) => {
                failed = true;
                table.push(format!("{:<20} error: {}", cfg.name(), e.lines().next().unwrap_or("")));
                eprintln!("{}: {e}", cfg.name());
            }
        }
        if STOP.load(Ordering::SeqCst) {
            break;
        }
    }
    println!(
        "\n{:<20} {:>5} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9} {:>11}",
        "configuration", "n", "fail", "min ms", "p50 ms", "p90 ms", "p99 ms", "max ms", "RSS"
    );
    for line in &table {
        println!("{line}");
    }
    println!("\nnotes:");
    for cfg in Config::ALL.into_iter().filter(|c| table.iter().any(|l| l.starts_with(c.name()))) {
        println!("  {:<20} {}", cfg.name(), cfg.note());
    }
    println!("  RSS = VmRSS of the supervisor process (python for supervisord) after the kills");
    println!();
    println!("| configuration | kills | failures | min | p50 | p90 | p99 | max | RSS |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for row in &markdown {
        println!("{row}");
    }
    if let Some(path) = &o.raw {
        if let Err(e) = fs::write(path, format!("config,kill,latency_us\n{raw}")) {
            eprintln!("{}: {e}", path.display());
            failed = true;
        }
    }
    std::process::exit(failed as i32);
}
