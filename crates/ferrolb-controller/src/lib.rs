//! ferrolb's controller: assigns pool addresses to LoadBalancer Services.

pub mod service_request;
