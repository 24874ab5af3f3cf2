//! The registry of key prefixes: every partition key the hub writes, in the table and in
//! its two indexes, starts with one of these, and every module builds its keys from them.
//! One table holds every record (the single-table design), so two record kinds whose
//! partition keys could be equal would read and overwrite each other; the test at the
//! bottom proves no two prefixes of one key space can produce the same key.
//!
//! The tail after the prefix is the record's own (an id, a name, a date); which record a
//! key belongs to is decided by its prefix alone. Sort-key prefixes inside one partition
//! (`MEMBER#` in a group's, `SEEN#` in a reconcile run's) are listed too, by partition.

/// Which key attribute a prefix is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Space {
    /// The table's partition key (`pk`).
    Pk,
    /// The partition key of index `gsi1`.
    Gsi1,
    /// The partition key of index `gsi2`.
    Gsi2,
}

/// One registered prefix.
#[derive(Clone, Copy, Debug)]
pub struct Prefix {
    pub space: Space,
    pub prefix: &'static str,
    /// Whether the prefix is the whole key (a fixed index partition such as `TARGETS`).
    pub exact: bool,
    /// What the records are, and which module writes them.
    pub what: &'static str,
}

// ---- the table's partition keys ------------------------------------------------------

/// A user: `USER#{id}` (directory).
pub const USER: &str = "USER#";
/// A group and its membership items: `GROUP#{id}` (directory).
pub const GROUP: &str = "GROUP#";
/// A uniqueness key: `UNIQ#{type}#{attr}#{value}` (directory).
pub const UNIQ: &str = "UNIQ#";
/// A replicated site entity: `ENTITY#{type}#{uuid}[#{langcode}]` (records).
pub const ENTITY: &str = "ENTITY#";
/// A replicated configuration object: `CONFIG#{name}` (records).
pub const CONFIG: &str = "CONFIG#";
/// A target definition: `TARGET#{id}` (target).
pub const TARGET: &str = "TARGET#";
/// A source definition: `SOURCE#{id}` (source).
pub const SOURCE: &str = "SOURCE#";
/// An API token, by the SHA-256 of its secret: `TOKEN#{hex}` (http auth).
pub const TOKEN: &str = "TOKEN#";
/// A change event not yet handed to the queue: `OUTBOX#{event id}` (event).
pub const OUTBOX: &str = "OUTBOX#";
/// A source's id of a hub resource: `SRCLINK#{source}#{type}#{site id}` (inbound).
pub const SRCLINK: &str = "SRCLINK#";
/// Last-writer-wins stamp of a resource: `STAMP#{type}#{hub id}` (inbound).
pub const STAMP: &str = "STAMP#";
/// Webhook replay marker: `WHID#{source}#{delivery}` (inbound).
pub const WHID: &str = "WHID#";
/// Audit entries of one day: `AUDIT#{yyyy-mm-dd}` (audit).
pub const AUDIT_DAY: &str = "AUDIT#";
/// A pull source's cursor: `CURSOR#{source}` (pull).
pub const CURSOR: &str = "CURSOR#";
/// A hub resource's link on a target: `LINK#{target}#{type}#{hub id}` (link).
pub const LINK: &str = "LINK#";
/// Delivery idempotency: `DONE#{event id}#{target}` (link).
pub const DONE: &str = "DONE#";
/// A reconcile run's state and pages seen: `RECON#{target}` (reconcile).
pub const RECON: &str = "RECON#";
/// A reconcile lease: `LEASE#{target}` (reconcile).
pub const LEASE: &str = "LEASE#";
/// A run (reconcile, on-demand sync) and its events' outcomes: `RUN#{run id}` (runs).
pub const RUN: &str = "RUN#";
/// The store-backed queue: `Q#{queue}#G#{group}` and `Q#{queue}#D#{dedup}` (queue).
pub const QUEUE: &str = "Q#";
/// A signed-in console session, by the SHA-256 of its cookie: `SESSION#{hex}` (http
/// console).
pub const SESSION: &str = "SESSION#";
/// Settled operation counts of an hour or a day: `STATS#H#{hour}`, `STATS#D#{day}`
/// (insight).
pub const STATS: &str = "STATS#";
/// A target's delivery pace (window, Retry-After, rate), shared by every process that
/// delivers: `PACE#{target}` (pace).
pub const PACE: &str = "PACE#";
/// One shard of a resource type's count: `COUNT#{type}#{nn}` (directory).
pub const COUNT: &str = "COUNT#";
/// Store-wide facts, such as the key layout version: `META#LAYOUT` (directory).
pub const META: &str = "META#";
/// Where a page of an index-paged listing starts, kept a while:
/// `PAGEAT#{query hash}` / `{startIndex}` (directory).
pub const PAGE_AT: &str = "PAGEAT#";

/// A target's deprovision guard window: `GUARD#{target}` (held).
pub const GUARD: &str = "GUARD#";
/// Deprovisions held for approval on a target: `HELD#{target}` / `{held id}` (held).
pub const HELD: &str = "HELD#";
/// A target's journal of deprovisions, for undo: `JOURNAL#{target}` / `{at}#{id}`
/// (journal).
pub const JOURNAL: &str = "JOURNAL#";
/// Deletions deferred on a target (deactivated, deleted when due unless restored):
/// `DEFER#{target}` / `{hub id}` (held).
pub const DEFER: &str = "DEFER#";
/// How many deletions a target has deferred (a counter), and whether they are all in the
/// due-time index: `DEFERN#{target}` / `COUNT`, `INDEXED` (deferred).
pub const DEFER_COUNT: &str = "DEFERN#";

// ---- index gsi1 ----------------------------------------------------------------------

/// Resources of one type, in creation order, one partition per shard:
/// `RT#{type}#{shard}`; `RT#{type}` in stores not yet migrated (directory).
pub const RESOURCE_TYPE: &str = "RT#";
/// The groups a member is in: `MEMBEROF#{member id}` (directory).
pub const MEMBER_OF: &str = "MEMBEROF#";
/// Every entity, for export (records).
pub const ENTITIES: &str = "ENTITIES";
/// Every configuration object, for export (records).
pub const CONFIGS: &str = "CONFIGS";
/// Every target definition (target).
pub const TARGETS: &str = "TARGETS";
/// Every source definition (source).
pub const SOURCES: &str = "SOURCES";
/// Every stored API token, by token id (http auth).
pub const TOKENS: &str = "TOKENS";
/// Runs whose outcome is not settled yet, oldest first (runs).
pub const RUNS_OPEN: &str = "RUNS#OPEN";
/// Outbox records by age, for the sweeper (event).
pub const OUTBOX_BY_AGE: &str = "OUTBOX";
/// Audit entries of one target: `AUDIT#T#{target}` (audit).
pub const AUDIT_TARGET: &str = "AUDIT#T#";
/// A target's links of one type: `LINKS#{target}#{type}` (link).
pub const LINKS: &str = "LINKS#";
/// The store-backed queue's ready and dead-letter lists: `Q#{queue}#READY`,
/// `Q#{queue}#DLQ` (queue).
pub const QUEUE_INDEX: &str = "Q#";
/// A target's deferred deletions by due time: `DEFERDUE#{target}` /
/// `{due, 12 digits}#{hub id}` (deferred).
pub const DEFER_DUE: &str = "DEFERDUE#";

// ---- index gsi2 ----------------------------------------------------------------------

/// A hub id by its target id: `LINKT#{target}#{type}#{target id}` (link).
pub const LINK_BY_TARGET_ID: &str = "LINKT#";
/// Resources of one type by last modification, one partition per shard:
/// `LM#{type}#{shard}` / `{lastModified}#{id}` (directory).
pub const MODIFIED: &str = "LM#";
/// Audit entries of one resource: `AUDIT#R#{resource}` (audit; index gsi2, where
/// `sync/audit.rs` puts them).
pub const AUDIT_RESOURCE: &str = "AUDIT#R#";

// ---- sort keys within one partition --------------------------------------------------

/// A member in its group's partition: `MEMBER#{member id}` (directory).
pub const MEMBER_SK: &str = "MEMBER#";

/// Every prefix, for the collision test and `infra/README.md`.
pub const ALL: &[Prefix] = &[
    p(Space::Pk, USER, "users"),
    p(Space::Pk, GROUP, "groups and their membership items"),
    p(Space::Pk, UNIQ, "uniqueness keys"),
    p(Space::Pk, ENTITY, "site entities"),
    p(Space::Pk, CONFIG, "site configuration"),
    p(Space::Pk, TARGET, "target definitions"),
    p(Space::Pk, SOURCE, "source definitions"),
    p(Space::Pk, TOKEN, "API tokens (hashed)"),
    p(Space::Pk, OUTBOX, "outbox records"),
    p(Space::Pk, SRCLINK, "source links"),
    p(Space::Pk, STAMP, "last-writer-wins stamps"),
    p(Space::Pk, WHID, "webhook replay markers"),
    p(Space::Pk, AUDIT_DAY, "audit entries by day"),
    p(Space::Pk, CURSOR, "pull cursors"),
    p(Space::Pk, LINK, "target links"),
    p(Space::Pk, DONE, "delivery idempotency keys"),
    p(Space::Pk, RECON, "reconcile runs"),
    p(Space::Pk, LEASE, "reconcile leases"),
    p(Space::Pk, RUN, "runs and their outcomes"),
    p(Space::Pk, QUEUE, "the embedded queue"),
    p(Space::Pk, SESSION, "console sessions (hashed)"),
    p(Space::Pk, STATS, "settled operation counts"),
    p(Space::Pk, PACE, "a target's delivery pace"),
    p(Space::Pk, COUNT, "resource counts (sharded counters)"),
    p(Space::Pk, META, "store-wide facts (key layout version)"),
    p(
        Space::Pk,
        PAGE_AT,
        "remembered start positions of index pages",
    ),
    p(Space::Pk, GUARD, "deprovision guard windows"),
    p(Space::Pk, HELD, "deprovisions held for approval"),
    p(Space::Pk, JOURNAL, "journal of deprovisions (undo)"),
    p(
        Space::Pk,
        DEFER,
        "deferred deletions (deactivated, deleted when due)",
    ),
    p(
        Space::Pk,
        DEFER_COUNT,
        "how many deletions a target has deferred",
    ),
    p(Space::Gsi1, RESOURCE_TYPE, "resources by type"),
    p(Space::Gsi1, MEMBER_OF, "groups of a member"),
    exact(Space::Gsi1, ENTITIES, "all entities"),
    exact(Space::Gsi1, CONFIGS, "all configuration"),
    exact(Space::Gsi1, TARGETS, "all targets"),
    exact(Space::Gsi1, SOURCES, "all sources"),
    exact(Space::Gsi1, TOKENS, "all API tokens"),
    exact(Space::Gsi1, RUNS_OPEN, "runs not settled yet"),
    exact(Space::Gsi1, OUTBOX_BY_AGE, "outbox by age"),
    p(Space::Gsi1, AUDIT_TARGET, "audit entries by target"),
    p(Space::Gsi1, LINKS, "links of a target"),
    p(
        Space::Gsi1,
        QUEUE_INDEX,
        "the embedded queue's ready and dead lists",
    ),
    p(Space::Gsi1, DEFER_DUE, "deferred deletions by due time"),
    p(Space::Gsi2, LINK_BY_TARGET_ID, "hub id by target id"),
    p(Space::Gsi2, MODIFIED, "resources by last modification"),
    p(Space::Gsi2, AUDIT_RESOURCE, "audit entries by resource"),
];

const fn p(space: Space, prefix: &'static str, what: &'static str) -> Prefix {
    Prefix {
        space,
        prefix,
        exact: false,
        what,
    }
}

const fn exact(space: Space, prefix: &'static str, what: &'static str) -> Prefix {
    Prefix {
        space,
        prefix,
        exact: true,
        what,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two prefixes of one space collide when a key built from one could be a key built
    /// from the other: one is a prefix of the other (a key of the shorter one could
    /// continue as the longer one), or both are the same exact key.
    fn collide(a: &Prefix, b: &Prefix) -> bool {
        if a.space != b.space {
            return false;
        }
        match (a.exact, b.exact) {
            (true, true) => a.prefix == b.prefix,
            (true, false) => a.prefix.starts_with(b.prefix),
            (false, true) => b.prefix.starts_with(a.prefix),
            (false, false) => a.prefix.starts_with(b.prefix) || b.prefix.starts_with(a.prefix),
        }
    }

    #[test]
    fn no_two_prefixes_collide() {
        let mut clashes = Vec::new();
        for (i, a) in ALL.iter().enumerate() {
            for b in &ALL[i + 1..] {
                if collide(a, b) {
                    clashes.push(format!("{:?} {:?} / {:?}", a.space, a.prefix, b.prefix));
                }
            }
        }
        assert!(clashes.is_empty(), "colliding key prefixes: {clashes:?}");
    }

    #[test]
    fn the_collision_rule_sees_collisions() {
        let a = p(Space::Pk, "LINK#", "");
        assert!(collide(&a, &p(Space::Pk, "LINK#T#", "")));
        assert!(!collide(&a, &p(Space::Pk, "LINKT#", "")));
        assert!(!collide(&a, &p(Space::Gsi1, "LINK#", "")));
        assert!(collide(
            &exact(Space::Gsi1, "OUTBOX", ""),
            &p(Space::Gsi1, "OUT", "")
        ));
        assert!(!collide(
            &exact(Space::Gsi1, "OUTBOX", ""),
            &p(Space::Gsi1, "OUTBOX#", "")
        ));
    }

    #[test]
    fn every_prefix_ends_in_a_separator_unless_exact() {
        for x in ALL {
            assert!(
                x.exact || x.prefix.ends_with('#'),
                "{} must end in '#'",
                x.prefix
            );
        }
    }
}
