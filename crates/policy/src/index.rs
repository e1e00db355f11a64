//! Per-role policy indexes: rules keyed by an exact claim value are found by hash lookup,
//! so a namespace with many email or group allow-lists costs a few lookups, not a scan.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::TargetModel;
use crate::compile::{CompiledPolicy, Ctx, any_atom};

/// FNV-1a: fast for the short strings used as keys. The keys come from policies, not from
/// requests, so a caller cannot lengthen a bucket.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 { 0xcbf2_9ce4_8422_2325 } else { self.0 };
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = hash;
    }
}

/// `(position in the role's order, compiled policy index, rule index)`.
type Entry = (usize, usize, usize);

/// Anchored rules of one claim path.
#[derive(Debug)]
struct AnchorSlot {
    slot: usize,
    path: Box<[Box<str>]>,
    split_spaces: bool,
    by_value: HashMap<Box<str>, Vec<Entry>, BuildHasherDefault<Fnv>>,
}

/// The policies of one role (CUSTOM, DENY or ALLOW) that may apply to a namespace's models.
#[derive(Debug, Default)]
pub(crate) struct RoleIndex {
    /// Every policy, in evaluation order (compiled indices).
    pub(crate) all: Vec<usize>,
    /// Policies with a rule that has no anchor: evaluated one by one. `(position, index)`.
    linear: Vec<(usize, usize)>,
    /// Rules of the other policies, by anchor.
    anchors: Vec<AnchorSlot>,
}

impl RoleIndex {
    pub(crate) fn build(all: Vec<usize>, compiled: &[CompiledPolicy]) -> RoleIndex {
        let mut linear = Vec::new();
        let mut anchors: Vec<AnchorSlot> = Vec::new();
        for (pos, &i) in all.iter().enumerate() {
            let rules = compiled[i].rules();
            let all_anchored = rules.iter().all(|r| r.anchor().is_some());
            if !all_anchored {
                linear.push((pos, i));
                continue;
            }
            for (r, rule) in rules.iter().enumerate() {
                let Some(anchor) = rule.anchor() else { continue };
                let at = match anchors.iter().position(|a| a.slot == anchor.slot) {
                    Some(at) => at,
                    None => {
                        anchors.push(AnchorSlot {
                            slot: anchor.slot,
                            path: anchor.path.into(),
                            split_spaces: anchor.split_spaces,
                            by_value: HashMap::default(),
                        });
                        anchors.len() - 1
                    }
                };
                for value in anchor.values {
                    let entries = anchors[at].by_value.entry(Box::from(value)).or_default();
                    if entries.last() != Some(&(pos, i, r)) {
                        entries.push((pos, i, r));
                    }
                }
            }
        }
        RoleIndex { all, linear, anchors }
    }

    /// Whether any policy of the role selects the model.
    pub(crate) fn any_selects<'r>(
        &self,
        compiled: &[CompiledPolicy],
        ctx: &Ctx<'r>,
        model: &'r TargetModel,
    ) -> bool {
        self.all.iter().any(|&i| compiled[i].selects(ctx, model))
    }

    /// The first `(policy, rule)` in evaluation order that selects the model and matches.
    pub(crate) fn first_match<'r>(
        &self,
        compiled: &[CompiledPolicy],
        ctx: &Ctx<'r>,
        model: &'r TargetModel,
    ) -> Option<(usize, usize)> {
        // Best so far as (position, rule, policy): the order decides which policy is reported.
        let mut best: Option<(usize, usize, usize)> = None;
        for &(pos, i) in &self.linear {
            let policy = &compiled[i];
            if policy.selects(ctx, model)
                && let Some(r) = policy.first_match(ctx)
            {
                best = Some((pos, r, i));
                break;
            }
        }
        for anchor in &self.anchors {
            let Some(value) = ctx.claim(anchor.slot, &anchor.path) else { continue };
            any_atom(value, anchor.split_spaces, |atom| {
                let Some(entries) = anchor.by_value.get(atom) else { return false };
                for &(pos, i, r) in entries {
                    if best.is_some_and(|(bp, br, _)| (bp, br) <= (pos, r)) {
                        break;
                    }
                    let policy = &compiled[i];
                    if policy.selects(ctx, model) && policy.rules()[r].matches(ctx) {
                        best = Some((pos, r, i));
                    }
                }
                false
            });
        }
        best.map(|(_, r, i)| (i, r))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::compile::{CacheSlots, compile};
    use crate::{PolicyRef, Request, Settings, parse_policy};

    fn rule() -> impl Strategy<Value = String> {
        let when = prop_oneof![
            prop::sample::subsequence(vec!["a@x.io", "b@x.io", "c@x.io"], 1..3)
                .prop_map(|v| format!("{{key: \"request.auth.claims[email]\", values: {v:?}}}")),
            prop::sample::subsequence(vec!["g1", "g2", "g3"], 1..3)
                .prop_map(|v| format!("{{key: \"request.auth.claims[groups]\", values: {v:?}}}")),
            Just("{key: \"request.auth.claims[groups]\", values: [\"g*\"]}".to_owned()),
            Just("{key: \"request.auth.claims[groups]\", notValues: [\"g2\"]}".to_owned()),
            prop::sample::subsequence(vec!["read", "write"], 1..2)
                .prop_map(|v| format!("{{key: \"request.auth.claims[scope]\", values: {v:?}}}")),
        ];
        let to = prop_oneof![
            Just(String::new()),
            Just(", to: [{operation: {paths: [\"/a*\"]}}]".to_owned()),
            Just(", to: [{operation: {methods: [GET]}}]".to_owned()),
        ];
        prop_oneof![
            Just("{}".to_owned()),
            (prop::collection::vec(when, 1..3), to)
                .prop_map(|(w, t)| format!("{{when: [{}]{t}}}", w.join(", "))),
        ]
    }

    fn policy() -> impl Strategy<Value = (Option<&'static str>, Vec<String>)> {
        (prop::option::of(prop::sample::select(vec!["iris", "other"])), prop::collection::vec(rule(), 0..3))
    }

    fn request()
    -> impl Strategy<Value = (Option<&'static str>, serde_json::Value, &'static str, &'static str)> {
        let groups = prop_oneof![
            Just(serde_json::Value::Null),
            prop::sample::select(vec!["g1", "g2", "g9"]).prop_map(serde_json::Value::from),
            prop::sample::subsequence(vec!["g1", "g2", "g3", "g9"], 0..4).prop_map(serde_json::Value::from),
        ];
        let email = prop::option::of(prop::sample::select(vec!["a@x.io", "b@x.io", "z@x.io"]));
        let scope = prop::option::of(prop::sample::select(vec!["read write", "write", "admin"]));
        (
            prop::option::of(prop::sample::select(vec!["iris", "other"])),
            (email, groups, scope).prop_map(|(e, g, s)| {
                let mut claims = serde_json::Map::new();
                if let Some(e) = e {
                    claims.insert("email".into(), e.into());
                }
                if !g.is_null() {
                    claims.insert("groups".into(), g);
                }
                if let Some(s) = s {
                    claims.insert("scope".into(), s.into());
                }
                serde_json::Value::Object(claims)
            }),
            prop::sample::select(vec!["/a/x", "/b"]),
            prop::sample::select(vec!["GET", "POST"]),
        )
    }

    proptest! {
        /// The index finds exactly the first match a linear scan finds.
        #[test]
        fn index_agrees_with_linear_scan(
            policies in prop::collection::vec(policy(), 0..12),
            (label, claims, path, method) in request(),
        ) {
            let settings = Settings::default();
            let mut slots = CacheSlots::default();
            let mut compiled = Vec::new();
            for (n, (selector, rules)) in policies.iter().enumerate() {
                let selector = selector.map(|app| format!("  selector: {{matchLabels: {{app: {app}}}}}\n")).unwrap_or_default();
                let rules = if rules.is_empty() { String::new() } else { format!("  rules: [{}]\n", rules.join(", ")) };
                let text = format!(
                    "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: p{n}, namespace: ns}}\nspec:\n{selector}{rules}"
                );
                let policy = parse_policy(&text, Path::new("p.yaml")).expect("generated policy parses");
                let reference = PolicyRef { namespace: Arc::from("ns"), name: Arc::from(format!("p{n}").as_str()) };
                compiled.push(compile(&policy, reference, &settings, &mut slots).expect("compiles"));
            }
            let mut model = TargetModel::new(
                palisade_core::Namespace::new("ns").expect("ns"),
                palisade_core::ModelName::new("m").expect("name"),
            );
            if let Some(app) = label {
                model.labels.insert("app".into(), app.into());
            }
            let model = Arc::new(model);
            let mut req = Request::new(model.clone());
            req.claims = claims.as_object().cloned().map(Arc::new);
            req.path = path.to_owned();
            req.method = method.to_owned();

            let index = RoleIndex::build((0..compiled.len()).collect(), &compiled);
            let ctx = Ctx::new(&req);
            let indexed = index.first_match(&compiled, &ctx, &model);
            let fresh = Ctx::new(&req);
            let linear = compiled
                .iter()
                .enumerate()
                .filter(|(_, p)| p.selects(&fresh, &model))
                .find_map(|(i, p)| p.first_match(&fresh).map(|r| (i, r)));
            prop_assert_eq!(indexed, linear);
            prop_assert_eq!(index.any_selects(&compiled, &ctx, &model), compiled.iter().any(|p| p.selects(&fresh, &model)));
        }
    }
}
