//! `infra/template.yaml` as the tests read it: the functions, and the rights of each (the
//! statements of its role, with their `dynamodb:LeadingKeys` conditions).

use serde_yaml::Value;

/// The template, parsed (CloudFormation tags such as `!Ref` become tagged values).
pub fn template() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/template.yaml");
    serde_yaml::from_str(&std::fs::read_to_string(path).expect("infra/template.yaml"))
        .expect("template.yaml is YAML")
}

/// A string, or a test failure naming what it was.
pub fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

/// An intrinsic function: `(tag, argument)`, e.g. `("!Ref", "Table")`.
pub fn tagged(v: &Value) -> Option<(String, &Value)> {
    match v {
        Value::Tagged(t) => Some((t.tag.to_string(), &t.value)),
        _ => None,
    }
}

/// The functions of the template: `(logical id, binary name)`.
pub fn functions(t: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = t["Resources"]
        .as_mapping()
        .expect("Resources")
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::Serverless::Function"))
        .map(|(id, r)| {
            (
                s(id).to_string(),
                s(&r["Metadata"]["BuildProperties"]["Binary"]).to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

/// The logical id of a function's role (`Role: !GetAtt XRole.Arn`).
pub fn role_of(t: &Value, function: &str) -> String {
    let role = &t["Resources"][function]["Properties"]["Role"];
    match tagged(role) {
        Some((tag, v)) if tag == "!GetAtt" => s(v)
            .strip_suffix(".Arn")
            .unwrap_or_else(|| panic!("{function}: Role is not a role's Arn: {role:?}"))
            .to_string(),
        _ => panic!("{function}: Role must be !GetAtt <role>.Arn, is {role:?}"),
    }
}

/// What a statement applies to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Resource {
    /// The table (`!GetAtt Table.Arn`).
    Table,
    /// An index of the table (`!Sub "${Table.Arn}/index/NAME"`).
    Index(String),
    /// A resource of the template (`!GetAtt X.Arn` or `!Ref X`): its logical id.
    Named(String),
    /// `"*"`.
    Any,
}

/// One `Allow` statement.
#[derive(Clone, Debug)]
pub struct Statement {
    pub sid: String,
    pub actions: Vec<String>,
    pub resource: Resource,
    /// The `ForAllValues:StringLike` `dynamodb:LeadingKeys` patterns (empty: none).
    pub leading_keys: Vec<String>,
}

fn resource(v: &Value) -> Resource {
    if v.as_str() == Some("*") {
        return Resource::Any;
    }
    match tagged(v) {
        Some((tag, arg)) if tag == "!GetAtt" && s(arg) == "Table.Arn" => Resource::Table,
        Some((tag, arg)) if tag == "!GetAtt" => {
            Resource::Named(s(arg).trim_end_matches(".Arn").to_string())
        }
        Some((tag, arg)) if tag == "!Ref" => Resource::Named(s(arg).to_string()),
        Some((tag, arg)) if tag == "!Sub" => match s(arg).strip_prefix("${Table.Arn}/index/") {
            Some(index) => Resource::Index(index.to_string()),
            None => panic!("unexpected resource {v:?}"),
        },
        _ => panic!("unexpected resource {v:?}"),
    }
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Sequence(items) => items.iter().map(|i| s(i).to_string()).collect(),
        other => vec![s(other).to_string()],
    }
}

/// Every statement of a role's inline policies. Only `Allow` statements with one
/// resource are written in this template; anything else fails the test that reads it.
pub fn statements(t: &Value, role: &str) -> Vec<Statement> {
    let r = &t["Resources"][role];
    assert_eq!(s(&r["Type"]), "AWS::IAM::Role", "{role}");
    let mut out = Vec::new();
    for policy in r["Properties"]["Policies"].as_sequence().expect("Policies") {
        for st in policy["PolicyDocument"]["Statement"]
            .as_sequence()
            .expect("Statement")
        {
            assert_eq!(s(&st["Effect"]), "Allow", "{role}: {st:?}");
            let condition = &st["Condition"];
            let leading_keys = if condition.is_null() {
                Vec::new()
            } else {
                let keys = &condition["ForAllValues:StringLike"]["dynamodb:LeadingKeys"];
                assert!(
                    !keys.is_null(),
                    "{role}: unexpected condition {condition:?}"
                );
                strings(keys)
            };
            out.push(Statement {
                sid: st["Sid"].as_str().unwrap_or_default().to_string(),
                actions: strings(&st["Action"]),
                resource: resource(&st["Resource"]),
                leading_keys,
            });
        }
    }
    out
}

/// Whether an IAM `StringLike` pattern (`*` any run, `?` one character) matches.
pub fn string_like(pattern: &str, value: &str) -> bool {
    fn go(p: &[char], v: &[char]) -> bool {
        match p.split_first() {
            None => v.is_empty(),
            Some(('*', rest)) => (0..=v.len()).any(|i| go(rest, &v[i..])),
            Some(('?', rest)) => !v.is_empty() && go(rest, &v[1..]),
            Some((c, rest)) => v.first() == Some(c) && go(rest, &v[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let v: Vec<char> = value.chars().collect();
    go(&p, &v)
}
