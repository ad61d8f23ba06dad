//! [`TemplateSupervisor`]: a dynamic supervisor bound to a
//! [`ChildTemplate`], as OTP's `extra_arguments`.

use crate::{ChildTemplate, DynamicSupervisor, ProcessHandle, SupervisorError};

/// A [`DynamicSupervisor`] bound to a [`ChildTemplate`]: `start_child(args)`
/// starts a child from the template with the template's extra arguments
/// prepended, as OTP's `extra_arguments`. Every other call is the dynamic
/// supervisor's (it derefs to it).
///
/// # Example
///
/// ```
/// use kameo::prelude::*;
/// use mabeam_supervision_core::{ChildTemplate, DynamicSupervisor, ProcessHandle};
///
/// #[derive(Actor)]
/// struct Session { server: &'static str, user: String }
///
/// # #[tokio::main] async fn main() {
/// let template = ChildTemplate::new("session", "eu-1", |server, user: String| {
///     ProcessHandle::spawn::<Session>(Session { server, user })
/// });
/// let sup = DynamicSupervisor::with_template(Default::default(), template).await.unwrap();
/// let child = sup.start_child("ada".to_owned()).await.unwrap();
/// assert!(child.is_alive());
/// sup.stop().await;
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct TemplateSupervisor<A> {
    pub(super) supervisor: DynamicSupervisor,
    pub(super) template: ChildTemplate<A>,
}

impl<A> TemplateSupervisor<A>
where
    A: Clone + Send + Sync + 'static,
{
    /// Starts a child from the template with `args`.
    pub async fn start_child(&self, args: A) -> Result<ProcessHandle, SupervisorError> {
        self.supervisor.start_child(self.template.spec(args)).await
    }

    /// The underlying dynamic supervisor.
    pub fn supervisor(&self) -> &DynamicSupervisor {
        &self.supervisor
    }
}

impl<A> std::ops::Deref for TemplateSupervisor<A> {
    type Target = DynamicSupervisor;

    fn deref(&self) -> &DynamicSupervisor {
        &self.supervisor
    }
}
