// What both aoconnect peers share: the token they Eval (balances patched into the readable cache,
// Transfer, Balance), its recipient, and how they read tags and output.
export const TOKEN_LUA = `
Balances = Balances or { [Owner] = '1000' }
local function sync()
  Send({ device = 'patch@1.0', cache = { balances = Balances } })
end
Handlers.add('Transfer', 'Transfer', function(msg)
  local qty = tonumber(msg.Quantity or '0') or 0
  local have = tonumber(Balances[msg.From] or '0')
  if qty <= 0 or have < qty then
    msg.reply({ Action = 'Transfer-Error', Error = 'Insufficient balance' })
    return
  end
  Balances[msg.From] = tostring(math.floor(have - qty))
  Balances[msg.Recipient] = tostring(math.floor(tonumber(Balances[msg.Recipient] or '0') + qty))
  msg.reply({ Action = 'Debit-Notice', Recipient = msg.Recipient, Quantity = tostring(qty) })
  sync()
end)
Handlers.add('Balance', 'Balance', function(msg)
  local who = msg.Tags.Target or msg.From
  msg.reply({ Action = 'Balance-Notice', Account = who, Balance = Balances[who] or '0' })
end)
sync()
print('token ready')
`;

export const RECIPIENT = "R".repeat(43);
export const tagsOf = (msg) => Object.fromEntries((msg?.Tags ?? []).map((t) => [t.name, t.value]));
export const outputText = (result) => {
  const out = result?.Output;
  return typeof out === "string" ? out : String(out?.data ?? "");
};
