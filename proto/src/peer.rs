//! p2pd <-> p2pd: the piece protocol (built in the swarm-engine issue).
