-- Chain checks against an EVM node (chains.<name>.rpc_url): when the value
-- on chain differs from the one the gateway reported, received_amount holds
-- the on-chain value and reported_amount keeps what was reported.
ALTER TABLE payments ADD COLUMN reported_amount TEXT;
