--- A small command-line parser for the CLI: long and short options, `--name=value`, repeated options,
-- positionals, `--` to end options. Mistakes come back as `nil, message` (one line, for the user).
local ipairs, tonumber = ipairs, tonumber
local concat = table.concat

local _M = {}

--- The options every command that talks to Exact Online takes (configuration, see cli.config).
_M.connection = {
  { "--client-id", value = "ID", help = "the app's client id (EXACT_CLIENT_ID)" },
  { "--client-secret", value = "SECRET", help = "the app's client secret (EXACT_CLIENT_SECRET)" },
  { "--redirect-uri", value = "URI", help = "the redirect URI registered for the app (EXACT_REDIRECT_URI)" },
  { "--region", value = "R", help = "nl be de fr es uk us (EXACT_REGION; default nl)" },
  { "--base-url", value = "URL", help = "use this host instead of a region's (EXACT_BASE_URL)" },
  { "--division", value = "N", help = "division to work in (EXACT_DIVISION; default: the user's current)" },
  { "--token-file", value = "FILE", help = "where tokens are kept (EXACT_TOKEN_FILE)" },
  { "--cafile", value = "FILE", help = "extra CA certificates to trust (EXACT_CAFILE)" },
  { "--config", value = "FILE", help = "the Lua config file (EXACT_CONFIG)" },
}

-- "--client-id" -> "client_id"
local function key_of(opt)
  return (opt[1]:gsub("^%-+", ""):gsub("%-", "_"))
end

--- parse(argv, spec) --> opts | nil, message
-- spec = { options = { { "--name", "-n", value = "META", multi = true, number = true, help = "…" }, … },
--          positionals = { "NAME", … }, min = N, max = N }
-- opts[key] holds a string (or true for flags, or a list for multi); opts[1..n] the positionals.
function _M.parse(argv, spec)
  local byname = {}
  local function add(list)
    for _, o in ipairs(list or {}) do
      for _, n in ipairs(o) do byname[n] = o end
    end
  end
  add(spec.options)
  if spec.connection then add(_M.connection) end
  add({ { "--help", "-h" } })

  local opts, i, only_positionals = {}, 1, false
  while i <= #argv do
    local a = argv[i]
    if only_positionals or a == "-" or a:sub(1, 1) ~= "-" then
      opts[#opts + 1] = a
    elseif a == "--" then
      only_positionals = true
    else
      local name, inline = a:match("^(%-%-[^=]+)=(.*)$")
      name = name or a
      local o = byname[name]
      if not o then
        return nil, "unknown option " .. name
      end
      local key = key_of(o)
      local v = true
      if o.value then
        if inline then
          v = inline
        else
          i = i + 1
          v = argv[i]
          if v == nil then return nil, "option " .. name .. " needs a value (" .. o.value .. ")" end
        end
        if o.number then
          local n = tonumber(v)
          if not n then return nil, "option " .. name .. " needs a number, not '" .. v .. "'" end
          v = n
        end
      elseif inline then
        return nil, "option " .. name .. " takes no value"
      end
      if o.multi then
        opts[key] = opts[key] or {}
        local list = opts[key]
        list[#list + 1] = v
      else
        opts[key] = v
      end
    end
    i = i + 1
  end
  if opts.help then return opts end
  local min = spec.min or 0
  local max = spec.max or #(spec.positionals or {})
  if #opts < min then
    return nil, "missing " .. concat(spec.positionals or {}, " ", #opts + 1, min)
  end
  if #opts > max then
    return nil, "unexpected argument '" .. opts[max + 1] .. "'"
  end
  return opts
end

--- Help text: usage line, description, options, examples.
function _M.help(name, spec)
  local out = { "usage: exactonline " .. name .. " " .. (spec.usage or "[options]"), "" }
  if spec.description then out[#out + 1] = spec.description; out[#out + 1] = "" end
  local function list(title, options)
    if not options or #options == 0 then return end
    out[#out + 1] = title
    for _, o in ipairs(options) do
      local names = concat(o, ", ") .. (o.value and (" " .. o.value) or "")
      if #names > 24 then
        out[#out + 1] = "  " .. names
        out[#out + 1] = ("  %-24s  %s"):format("", o.help or "")
      else
        out[#out + 1] = ("  %-24s  %s"):format(names, o.help or "")
      end
    end
    out[#out + 1] = ""
  end
  list("options:", spec.options)
  if spec.connection then list("connection (flags > EXACT_* environment > config file):", _M.connection) end
  if spec.examples then
    out[#out + 1] = "examples:"
    for _, e in ipairs(spec.examples) do out[#out + 1] = "  " .. e end
    out[#out + 1] = ""
  end
  return concat(out, "\n")
end

--- Copy the connection flags of opts into a table with config keys (client_id, …).
function _M.connection_flags(opts)
  local t = {}
  for _, o in ipairs(_M.connection) do
    local k = key_of(o)
    if opts[k] ~= nil then t[k] = opts[k] end
  end
  return t
end

_M.key_of = key_of

return _M
