//! Validated model types: what user input means once it has been checked.

pub mod bgp;
pub mod community;
pub mod duration;
pub mod ip_range;
pub mod names;
pub mod pool;
pub mod selector;

pub use bgp::{
    AdvertisementError, BfdError, BfdSettings, BgpAdvertisementSettings, PasswordSource, PeerAsn,
    PeerConfig, PeerError, PeerTarget, Prepend, parse_bfd_profile, parse_bgp_advertisement,
    parse_peer,
};
pub use community::{Community, CommunityAliases, CommunityError};
pub use duration::{DurationError, parse_duration};
pub use ip_range::{AddressError, IpFamily, IpRange, ip_to_u128, u128_to_ip};
pub use names::{PoolName, ServiceKey};
pub use pool::{
    AddressPool, AllocationRules, PoolError, ValidatedPools, parse_pool, validate_pools,
};
pub use selector::{Labels, Selector, SelectorError, any_matches, parse_selectors};
