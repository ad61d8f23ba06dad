//! Paths into a configuration tree (a `serde_json::Value`): reading,
//! writing with missing parents created, walking, and merging defaults.

use serde_json::{Map, Value};

use super::ConfigError;

/// The keys of a dotted path; the empty path is the root.
pub(crate) fn segments(path: &str) -> Result<Vec<&str>, ConfigError> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<&str> = path.split('.').collect();
    if keys.iter().any(|k| k.is_empty()) {
        return Err(ConfigError::InvalidPath {
            path: path.to_owned(),
            reason: "a path is keys separated by single dots".into(),
        });
    }
    Ok(keys)
}

/// The value at `path`, if any.
pub(crate) fn get<'a>(tree: &'a Value, path: &str) -> Result<Option<&'a Value>, ConfigError> {
    let mut node = tree;
    for key in segments(path)? {
        match node.get(key) {
            Some(child) => node = child,
            None => return Ok(None),
        }
    }
    Ok(Some(node))
}

/// Sets `path` to `value`, creating missing parents as objects. A parent
/// that exists and is not an object is an error, and `tree` is unchanged.
pub(crate) fn set(tree: &mut Value, path: &str, value: Value) -> Result<(), ConfigError> {
    let keys = segments(path)?;
    let Some((last, parents)) = keys.split_last() else {
        *tree = value;
        return Ok(());
    };
    // Check first, so a failure leaves the tree as it was.
    let mut node = &*tree;
    for (depth, key) in parents.iter().enumerate() {
        match node.get(key) {
            Some(child) if child.is_object() => node = child,
            Some(_) => {
                return Err(ConfigError::InvalidPath {
                    path: path.to_owned(),
                    reason: format!("{} is not an object", keys[..=depth].join(".")),
                });
            }
            None => break,
        }
    }
    if !tree.is_object() {
        *tree = Value::Object(Map::new());
    }
    let mut node = tree;
    for key in parents {
        node = node
            .as_object_mut()
            .expect("checked above: every parent is an object")
            .entry(key.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    node.as_object_mut()
        .expect("checked above: every parent is an object")
        .insert(last.to_string(), value);
    Ok(())
}

/// Calls `visit(path, value)` for every value below the root.
pub(crate) fn walk(tree: &Value, prefix: &mut String, visit: &mut dyn FnMut(&str, &Value)) {
    if let Value::Object(map) = tree {
        for (key, value) in map {
            let len = prefix.len();
            if !prefix.is_empty() {
                prefix.push('.');
            }
            prefix.push_str(key);
            visit(prefix, value);
            walk(value, prefix, visit);
            prefix.truncate(len);
        }
    }
}

/// Merges `overlay` into `base`: objects key by key, anything else
/// replaced.
pub(crate) fn merge(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (Value::Object(base), Value::Object(overlay)) => {
            for (key, value) in overlay {
                match base.get_mut(&key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, overlay) => *base = overlay,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn set_creates_missing_parents_and_refuses_a_scalar_parent() {
        let mut tree = json!({"a": {"b": 1}, "n": 5});
        set(&mut tree, "a.c.d", json!(true)).unwrap();
        assert_eq!(tree, json!({"a": {"b": 1, "c": {"d": true}}, "n": 5}));
        let before = tree.clone();
        assert!(matches!(
            set(&mut tree, "n.x", json!(1)),
            Err(ConfigError::InvalidPath { .. })
        ));
        assert_eq!(tree, before);
        assert!(matches!(
            segments("a..b"),
            Err(ConfigError::InvalidPath { .. })
        ));
    }

    #[test]
    fn merge_is_deep() {
        let mut base = json!({"a": {"x": 1, "y": 2}, "b": 1});
        merge(&mut base, json!({"a": {"y": 3}, "c": 4}));
        assert_eq!(base, json!({"a": {"x": 1, "y": 3}, "b": 1, "c": 4}));
    }
}
