"""The Lua of a small AOS token used by the served-node tests: balances patched into the cache at boot
and after every Mint, so `/now/cache/balances/<who>` reads them."""

from __future__ import annotations

TOKEN_LUA = """
Balances = Balances or { alice = 100, bob = 42 }
Handlers.add('Mint', 'Mint', function(msg)
  Balances[msg.Recipient] = (Balances[msg.Recipient] or 0) + tonumber(msg.Quantity)
  Send({ device = 'patch@1.0', cache = { balances = Balances } })
end)
Send({ device = 'patch@1.0', cache = { balances = Balances, ticker = 'TKN', name = 'Demo token' } })
"""


# A token whose Transfer credits the recipient without checking the sender (the snapshot tests' load).
TRANSFER_TOKEN = (
    "Balances = Balances or { [Owner] = 1000000 }\n"
    'Handlers.add("transfer", Handlers.utils.hasMatchingTag("Action", "Transfer"), function(msg)\n'
    "  Balances[msg.Recipient] = (Balances[msg.Recipient] or 0) + tonumber(msg.Quantity)\n"
    "end)"
)
