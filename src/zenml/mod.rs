//! ZenML on Cedar: resource strings, the request a ZenML question becomes, and shares.
//!
//! A ZenML question is (workspace, user id, action, resource string). [`request::prepare`]
//! turns it into a Cedar request over the `ZenML` schema: the principal from the directory, a
//! request-scoped resource entity in its project or workspace, and a context naming the
//! custom-role grid cells and the shares that would allow exactly this request.

pub mod api;
pub mod request;
pub mod resource;
pub mod shares;
pub(crate) mod standin;
pub mod token;

pub use request::{Prepared, Question, prepare, prepare_for_decision};
pub use resource::{Resource, ResourceError, ResourceType};
pub use shares::{Grantee, ShareSet};
