"""The adversarial suite: every catalogue attack played in-process, one file per attack."""
