//! [`ConfigSchema`]: the known paths of a configuration, which of them
//! may be updated at run time, and the rule each value must follow.

use std::{collections::BTreeMap, fmt};

use serde_json::Value;

use super::{ConfigError, tree};

/// The rule a value must follow.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ValueRule {
    /// Any JSON value.
    Any,
    /// `true` or `false`.
    Bool,
    /// An integer within the bounds (inclusive) given.
    Integer {
        /// The smallest allowed.
        min: Option<i64>,
        /// The largest allowed.
        max: Option<i64>,
    },
    /// A number within the bounds (inclusive) given.
    Number {
        /// The smallest allowed.
        min: Option<f64>,
        /// The largest allowed.
        max: Option<f64>,
    },
    /// A string, one of `one_of` when given.
    String {
        /// The allowed strings (any when `None`).
        one_of: Option<Vec<String>>,
    },
    /// A JSON object.
    Object,
    /// A JSON array.
    Array,
}

impl ValueRule {
    /// An integer in `min..=max`.
    pub fn integer(min: i64, max: i64) -> Self {
        ValueRule::Integer {
            min: Some(min),
            max: Some(max),
        }
    }

    /// A number in `min..=max`.
    pub fn number(min: f64, max: f64) -> Self {
        ValueRule::Number {
            min: Some(min),
            max: Some(max),
        }
    }

    /// Any string.
    pub fn string() -> Self {
        ValueRule::String { one_of: None }
    }

    /// One of these strings.
    pub fn one_of<I: IntoIterator<Item = S>, S: Into<String>>(choices: I) -> Self {
        ValueRule::String {
            one_of: Some(choices.into_iter().map(Into::into).collect()),
        }
    }

    /// Whether `value` follows the rule.
    pub fn admits(&self, value: &Value) -> bool {
        match self {
            ValueRule::Any => true,
            ValueRule::Bool => value.is_boolean(),
            ValueRule::Integer { min, max } => value
                .as_i64()
                .is_some_and(|v| min.is_none_or(|min| v >= min) && max.is_none_or(|max| v <= max)),
            ValueRule::Number { min, max } => value
                .as_f64()
                .is_some_and(|v| min.is_none_or(|min| v >= min) && max.is_none_or(|max| v <= max)),
            ValueRule::String { one_of } => value
                .as_str()
                .is_some_and(|s| one_of.as_ref().is_none_or(|c| c.iter().any(|c| c == s))),
            ValueRule::Object => value.is_object(),
            ValueRule::Array => value.is_array(),
        }
    }
}

impl fmt::Display for ValueRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn bounds<T: fmt::Display>(
            f: &mut fmt::Formatter<'_>,
            what: &str,
            min: &Option<T>,
            max: &Option<T>,
        ) -> fmt::Result {
            match (min, max) {
                (Some(min), Some(max)) => write!(f, "{what} in {min}..={max}"),
                (Some(min), None) => write!(f, "{what} of at least {min}"),
                (None, Some(max)) => write!(f, "{what} of at most {max}"),
                (None, None) => write!(f, "{what}"),
            }
        }
        match self {
            ValueRule::Any => f.write_str("any value"),
            ValueRule::Bool => f.write_str("a boolean"),
            ValueRule::Integer { min, max } => bounds(f, "an integer", min, max),
            ValueRule::Number { min, max } => bounds(f, "a number", min, max),
            ValueRule::String { one_of: None } => f.write_str("a string"),
            ValueRule::String {
                one_of: Some(choices),
            } => {
                write!(f, "one of {choices:?}")
            }
            ValueRule::Object => f.write_str("an object"),
            ValueRule::Array => f.write_str("an array"),
        }
    }
}

/// One known path: whether it may be updated at run time, and its rule.
#[derive(Debug, Clone, PartialEq)]
pub struct PathRule {
    /// Whether [`update`](super::ConfigServer::update) may change it.
    pub updatable: bool,
    /// The rule its value follows (checked for updates and defaults).
    pub rule: ValueRule,
}

/// The known paths of a configuration.
///
/// A path is dot-separated keys (`rate_limiter.default_rate`); a `*`
/// segment in a schema path matches any one key
/// (`services.*.timeout_ms`). An exact path wins over a wildcard one.
///
/// # Example
///
/// ```
/// use mabeam_foundation_services::{ConfigSchema, ValueRule};
///
/// let schema = ConfigSchema::new()
///     .updatable("rate_limiter.default_rate", ValueRule::integer(1, 10_000))
///     .updatable("services.*.timeout_ms", ValueRule::integer(1, 60_000))
///     .fixed("node.name", ValueRule::string());
/// assert!(schema.rule("services.billing.timeout_ms").unwrap().updatable);
/// assert!(!schema.rule("node.name").unwrap().updatable);
/// assert!(schema.rule("unknown").is_none());
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigSchema {
    paths: BTreeMap<String, PathRule>,
}

impl ConfigSchema {
    /// A schema with no path.
    pub fn new() -> Self {
        ConfigSchema::default()
    }

    /// Adds a path that may be updated at run time.
    pub fn updatable(mut self, path: impl Into<String>, rule: ValueRule) -> Self {
        self.paths.insert(
            path.into(),
            PathRule {
                updatable: true,
                rule,
            },
        );
        self
    }

    /// Adds a path fixed at run time (its defaults are still checked).
    pub fn fixed(mut self, path: impl Into<String>, rule: ValueRule) -> Self {
        self.paths.insert(
            path.into(),
            PathRule {
                updatable: false,
                rule,
            },
        );
        self
    }

    /// The rule of `path`: its own, or the first wildcard path matching it.
    pub fn rule(&self, path: &str) -> Option<&PathRule> {
        if let Some(rule) = self.paths.get(path) {
            return Some(rule);
        }
        self.paths
            .iter()
            .find(|(pattern, _)| pattern.contains('*') && matches(pattern, path))
            .map(|(_, rule)| rule)
    }

    /// The schema's paths and rules.
    pub fn paths(&self) -> impl Iterator<Item = (&str, &PathRule)> {
        self.paths.iter().map(|(p, r)| (p.as_str(), r))
    }

    /// Checks that every schema path is well formed.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        for path in self.paths.keys() {
            tree::segments(path).map_err(|e| ConfigError::InvalidSchema(e.to_string()))?;
        }
        Ok(())
    }

    /// Checks an update of `path` to `value`.
    pub(crate) fn check_update(&self, path: &str, value: &Value) -> Result<(), ConfigError> {
        tree::segments(path)?;
        match self.rule(path) {
            Some(rule) if rule.updatable => check_value(path, &rule.rule, value),
            _ => Err(ConfigError::Forbidden {
                path: path.to_owned(),
            }),
        }
    }

    /// Checks every value of `tree` at a path the schema knows.
    pub(crate) fn check_tree(&self, tree: &Value) -> Result<(), ConfigError> {
        let mut failure = None;
        tree::walk(tree, &mut String::new(), &mut |path, value| {
            if failure.is_none()
                && let Some(rule) = self.rule(path)
                && let Err(e) = check_value(path, &rule.rule, value)
            {
                failure = Some(e);
            }
        });
        failure.map_or(Ok(()), Err)
    }
}

fn check_value(path: &str, rule: &ValueRule, value: &Value) -> Result<(), ConfigError> {
    if rule.admits(value) {
        Ok(())
    } else {
        Err(ConfigError::InvalidValue {
            path: path.to_owned(),
            rule: rule.to_string(),
            value: value.to_string(),
        })
    }
}

fn matches(pattern: &str, path: &str) -> bool {
    let mut pattern = pattern.split('.');
    let mut path = path.split('.');
    loop {
        match (pattern.next(), path.next()) {
            (None, None) => return true,
            (Some(p), Some(k)) if p == "*" || p == k => {}
            _ => return false,
        }
    }
}
