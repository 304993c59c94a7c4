//! The valid section and key names, kept as data so an unknown one can be answered with the
//! nearest valid one instead of a bare "unknown key".

/// Every section and its keys, in the order of the contract.
pub(super) const SECTIONS: &[(&str, &[&str])] = &[
    ("node", &["name", "data_dir", "priority", "weight", "zone"]),
    (
        "gossip",
        &[
            "listen",
            "advertise",
            "seeds",
            "profile",
            "interval",
            "key_file",
            "insecure",
            "cluster",
            "discover",
            "discover_address",
        ],
    ),
    ("metrics", &["interval", "probes", "listen"]),
    (
        "api",
        &["listen", "insecure", "allowed_hosts", "tls_cert", "tls_key"],
    ),
    ("control", &["operators", "operator_key_file"]),
    ("supervision", &["trees", "log_max_bytes", "log_keep"]),
    (
        "store",
        &[
            "raw_retention",
            "rollup_retention",
            "backfill",
            "remote_write",
        ],
    ),
    (
        "alerts",
        &[
            "flap_threshold",
            "flap_window",
            "repeat",
            "sinks",
            "commands",
            "actions",
            "probe_warning",
        ],
    ),
];

/// The sections of the cluster settings document and their keys (`config::cluster`).
pub(super) const CLUSTER_SECTIONS: &[(&str, &[&str])] = &[(
    "alerts",
    &["flap_threshold", "flap_window", "repeat", "sinks"],
)];

/// Sink types and their keys (`type` included).
pub(super) const SINKS: &[(&str, &[&str])] = &[
    ("exec", &["type", "command", "command_name"]),
    (
        "webhook",
        &[
            "type",
            "url",
            "url_file",
            "token_file",
            "format",
            "chat_id",
            "user",
            "ca_file",
        ],
    ),
    ("alertmanager", &["type", "urls"]),
    (
        "email",
        &[
            "type",
            "smtp",
            "tls",
            "from",
            "to",
            "username",
            "password_file",
        ],
    ),
];

pub(super) fn section_names() -> Vec<&'static str> {
    SECTIONS.iter().map(|(name, _)| *name).collect()
}

/// The candidate closest to `word`, if it is close enough to be a plausible typo.
pub(super) fn nearest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let word = word.to_lowercase();
    candidates
        .iter()
        .map(|c| (distance(&word, c), *c))
        .filter(|(d, c)| *d <= 2 && d * 2 < word.len().max(c.len()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `section.key` for every section that has a key spelled exactly `key` (a key put in the
/// wrong section, or at the top level).
pub(super) fn sections_with_key(key: &str) -> Vec<String> {
    SECTIONS
        .iter()
        .filter(|(_, keys)| keys.contains(&key))
        .map(|(section, _)| format!("{section}.{key}"))
        .collect()
}

/// A hint to append to an "unknown" message: `; did you mean ...?` or nothing.
pub(super) fn hint(unknown: &str, here: &[&str], elsewhere: bool) -> String {
    if let Some(close) = nearest(unknown, here) {
        return format!("; did you mean \"{close}\"?");
    }
    if elsewhere {
        let homes = sections_with_key(&unknown.to_lowercase());
        if !homes.is_empty() {
            return format!("; did you mean \"{}\"?", homes.join("\" or \""));
        }
    }
    let valid = here.join(", ");
    if valid.is_empty() {
        String::new()
    } else {
        format!(" (valid: {valid})")
    }
}

/// Levenshtein distance over chars.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}
