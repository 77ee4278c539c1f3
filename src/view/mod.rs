//! The read model the daemon serves: its status, the last path changes, and why a flow
//! takes the path it takes. Values only; `report` renders them, `control` serves them.

pub mod explain;
pub mod history;
pub mod status;
