//! Names of the objects ferrolb relates to each other.

use std::fmt;
use std::sync::Arc;

/// The name of an `IPAddressPool`. Cheap to clone: the allocator keeps one per assignment.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolName(Arc<str>);

impl PoolName {
    pub fn new(name: impl AsRef<str>) -> Self {
        PoolName(Arc::from(name.as_ref()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PoolName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for PoolName {
    fn from(s: &str) -> Self {
        PoolName::new(s)
    }
}

/// A Service's `namespace/name`. Cheap to clone: the allocator keeps one per holder of an address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey(Arc<str>);

impl ServiceKey {
    pub fn new(namespace: &str, name: &str) -> Self {
        ServiceKey(Arc::from(format!("{namespace}/{name}")))
    }

    pub fn namespace(&self) -> &str {
        self.0.split_once('/').map_or("", |(ns, _)| ns)
    }

    pub fn name(&self) -> &str {
        self.0.split_once('/').map_or(&*self.0, |(_, n)| n)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_key_splits_back_into_namespace_and_name() {
        let key = ServiceKey::new("shop", "web");
        assert_eq!((key.namespace(), key.name()), ("shop", "web"));
        assert_eq!(key.to_string(), "shop/web");
    }
}
