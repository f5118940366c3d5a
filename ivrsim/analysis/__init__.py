"""Call analysis: how a recorded call went (talk time, turns, latency, interruptions, dead air, DTMF)."""
