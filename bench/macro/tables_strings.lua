-- Table- and string-heavy lua5.4 workload for bench/run-macro.
-- Deterministic: prints the same lines under every allocator (the driver hashes stdout).
-- Usage: lua5.4 tables_strings.lua [scale]   (scale 1.0 = about 2 s on a 2.3 GHz core)

local scale = tonumber(arg[1] or "1") or 1
local n = math.floor(150000 * scale)

-- a small deterministic generator (no math.random: its seed differs between runs)
local state = 12345
local function rnd(m)
  state = (state * 1103515245 + 12345) % 2147483648
  return state % m
end

local function hash(acc, s)
  for i = 1, #s, 7 do
    acc = (acc * 31 + s:byte(i)) % 4294967291
  end
  return acc
end

local acc = 0

-- 1. a big map of records; most of it dropped again
local map = {}
for i = 1, n do
  local k = "key:" .. i .. ":" .. rnd(997)
  map[k] = { id = i, name = string.rep("n", 1 + rnd(24)), tags = { rnd(10), rnd(100), "t" .. rnd(50) } }
end
local kept = 0
for k, v in pairs(map) do
  if v.id % 4 ~= 0 then map[k] = nil else kept = kept + 1 end
end
acc = (acc + kept) % 4294967291
collectgarbage()

-- 2. string building: concatenation, table.concat, gsub, format
local parts = {}
for i = 1, n do
  parts[#parts + 1] = string.format("%05d:%s", rnd(100000), string.rep("ab", 1 + i % 9))
end
local text = table.concat(parts, " ")
for _ = 1, 3 do
  text = text:gsub("ab", "BA"):gsub("(%d%d)(%d%d%d)", "%2-%1")
end
acc = hash(acc, text)
local words = 0
for w in text:gmatch("%S+") do
  words = words + 1
  if words % 97 == 0 then acc = hash(acc, w) end
end
acc = (acc + words) % 4294967291
parts, text = nil, nil
collectgarbage()

-- 3. arrays of small tables, sorted
local arr = {}
for i = 1, n do
  arr[i] = { a = rnd(1000), b = i, s = "v" .. (i % 333) }
end
table.sort(arr, function(x, y) if x.a ~= y.a then return x.a < y.a end return x.b > y.b end)
for i = 1, #arr, 1000 do acc = hash(acc, arr[i].s .. arr[i].b) end
arr = nil

-- 4. closures and short-lived objects (GC churn)
for round = 1, 4 do
  local objs = {}
  for i = 1, n // 2 do
    local base = i + round
    objs[i] = { f = function(x) return x + base end, v = { base, base * 2 } }
  end
  local s = 0
  for i = 1, #objs, 3 do s = s + objs[i].f(objs[i].v[2]) end
  acc = (acc + s) % 4294967291
end
collectgarbage()

-- 5. a growing string buffer
local buf = {}
for i = 1, n do
  buf[#buf + 1] = tostring(i * 7)
  if #buf >= 64 then buf = { table.concat(buf, ";") } end
end
acc = hash(acc, table.concat(buf))

print(string.format("tables_strings scale=%s n=%d", tostring(scale), n))
print(string.format("%d", acc))
