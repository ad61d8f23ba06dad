//! An `AgentId` comes from a borrowed `String` as from a `&str` (issue 26).

use mabeam_supervision_core::AgentId;

#[test]
fn an_agent_id_from_a_borrowed_string() {
    let ids: Vec<String> = (0..3).map(|i| format!("agent-{i}")).collect();
    let made: Vec<AgentId> = ids.iter().map(AgentId::from).collect();
    assert_eq!(made[2].as_str(), "agent-2");
    let via_into: AgentId = (&ids[0]).into();
    assert_eq!(via_into, AgentId::new("agent-0"));
}
