"""Operations: a local testnet as processes (``localnet``), the testnet left running
(``testnet``) and the demo built on it (``demo``)."""
