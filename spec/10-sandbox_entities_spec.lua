-- The sandbox imitates a whole administration: every entity on its regular, bulk/ and sync/ endpoints (only
-- where Exact has them), Exact's field names and types, consistent data, one Timestamp counter per division,
-- sync/Deleted, SyncTimestamp, mandatory filters, many divisions with their own budgets, changes on demand.
local helpers = require "helpers"
local catalog = require "exactonline.sandbox.catalog"

local function escape(s) return helpers.escape(s) end

describe("sandbox administration", function()
  local sb = helpers.use_sandbox{ divisions = 3, sizes = { accounts = 70, transactionlines = 2500,
    salesinvoices = 30, items = 12, glaccounts = 20 }, reset = { data = true }, limits = { window = 1e6 } }
  local token, div
  before_each(function()
    div, token = sb.division, sb:tokens().access_token
  end)

  local function get(path, d)
    local url = path:match("^https://") and path or ("/api/v1/" .. (d or div) .. "/" .. path)
    local status, body, h, raw = sb:api("GET", url, token)
    return status, body, h, raw
  end

  local function all(path, d)
    local rows, pages, url = {}, {}, path
    while url do
      local status, body, _, raw = get(url, d)
      assert.equal(200, status, raw)
      pages[#pages + 1] = #body.d.results
      for _, r in ipairs(body.d.results) do rows[#rows + 1] = r end
      url = body.d.__next
      if url then
        local prefix = sb.base_url .. "/api/v1/" .. (d or div) .. "/"
        assert.equal(prefix, url:sub(1, #prefix))
      end
    end
    return rows, pages
  end

  local EDM = {
    Guid = function(v) return type(v) == "string" and v:match("^%x+%-%x+%-%x+%-%x+%-%x+$") ~= nil end,
    DateTime = function(v) return type(v) == "string" and v:match("^/Date%(%-?%d+%)/$") ~= nil end,
    String = function(v) return type(v) == "string" end,
    Boolean = function(v) return type(v) == "boolean" end,
    Int32 = function(v) return type(v) == "number" and v == math.floor(v) end,
    Int64 = function(v) return type(v) == "number" and v == math.floor(v) end,
    Double = function(v) return type(v) == "number" end,
    Binary = function(v) return type(v) == "string" end,
  }

  local function check_types(row, types, where)
    for name, t in pairs(types) do
      local v = row[name]
      assert(v ~= nil, where .. ": " .. name .. " missing")
      if v ~= helpers.json.null then
        assert(EDM[t](v), where .. ": " .. name .. " is not an Edm." .. t .. ": " .. tostring(v))
      end
    end
  end

  describe("endpoints", function()
    for _, e in ipairs(catalog.entities) do
      if e.path then
        it(e.path .. ": the regular endpoint lists 60 a page with Exact's fields and types", function()
          local status, body, _, raw = get(e.path)
          assert.equal(200, status, raw)
          local rows = body.d.results
          assert.truthy(#rows >= 1)
          assert.truthy(#rows <= 60)
          check_types(rows[1], e.types, e.path)
          assert.is_nil(rows[1].Timestamp)
          for _, nav in ipairs(e.navigation or {}) do
            assert.truthy(rows[1][nav].__deferred.uri:find(rows[1][e.key], 1, true))
          end
          -- one by key
          local key = rows[1][e.key]
          local s2, one = get(e.path .. "(guid'" .. key .. "')")
          assert.equal(200, s2)
          assert.equal(key, one.d[e.key])
        end)
      else
        it(e.name .. " has no regular endpoint, as in Exact", function()
          assert.equal(404, (get("cashflow/PaymentTerms")))
        end)
      end
      if e.bulk then
        it(e.bulk .. " needs $select and answers the regular fields", function()
          local status, body = get(e.bulk)
          assert.equal(400, status)
          assert.truthy(body.error.message.value:find("$select", 1, true))
          local s2, b2, _, raw = get(e.bulk .. "?$select=" .. e.key .. ",Division")
          assert.equal(200, s2, raw)
          assert.is_string(b2.d.results[1][e.key])
          assert.equal(div, b2.d.results[1].Division)
        end)
      end
      if e.sync then
        it(e.sync .. " carries a Timestamp, in order, with the sync fields", function()
          local status, body, _, raw = get(e.sync .. "?$filter=" .. escape("Timestamp gt 1"))
          assert.equal(200, status, raw)
          local rows = body.d.results
          assert.truthy(#rows >= 1)
          check_types(rows[1], e.sync_types, e.sync)
          for i = 2, #rows do assert.truthy(rows[i].Timestamp > rows[i - 1].Timestamp) end
        end)
      end
    end

    it("has no bulk/ where Exact has none, and no sync/ for SalesInvoiceLines", function()
      assert.equal(404, (get("bulk/Project/Projects?$select=ID")))
      assert.equal(404, (get("bulk/Cashflow/PaymentTerms?$select=ID")))
      assert.equal(404, (get("sync/SalesInvoice/SalesInvoiceLines")))
    end)
  end)

  describe("data", function()
    it("references resolve, entries balance, invoices add up", function()
      local accounts = {}
      for _, r in ipairs(all("bulk/CRM/Accounts?$select=ID,Code,Name")) do
        assert.equal(18, #r.Code)
        accounts[r.ID] = r
      end
      local gl = {}
      for _, r in ipairs(all("bulk/Financial/GLAccounts?$select=ID,Code")) do gl[r.ID] = r.Code end
      local entries, n = {}, 0
      for _, r in ipairs(all("sync/Financial/TransactionLines?$select=ID,EntryID,AmountDC,Account,AccountCode," ..
          "GLAccount,GLAccountCode")) do
        n = n + 1
        assert.truthy(accounts[r.Account], "account of line " .. r.ID)
        assert.equal(accounts[r.Account].Code, r.AccountCode)
        assert.equal(gl[r.GLAccount], r.GLAccountCode)
        entries[r.EntryID] = (entries[r.EntryID] or 0) + math.floor(r.AmountDC * 100 + 0.5)
      end
      assert.equal(2500, n)
      for id, sum in pairs(entries) do assert.equal(0, sum, "entry " .. id) end
      -- one payment term per entry, for the entry's receivable
      local terms = all("sync/Cashflow/PaymentTerms?$select=EntryID,AmountDC")
      local count = 0
      for _ in pairs(entries) do count = count + 1 end
      assert.equal(count, #terms)
      for _, t in ipairs(terms) do assert.truthy(entries[t.EntryID]) end
      -- invoices: header totals are their lines' sums
      local items = {}
      for _, r in ipairs(all("bulk/Logistics/Items?$select=ID,Code")) do items[r.ID] = r.Code end
      local lines = {}
      local sel = "$select=InvoiceID,AmountFC,VATAmountFC,Item,ItemCode"
      for _, l in ipairs(all("bulk/SalesInvoice/SalesInvoiceLines?" .. sel)) do
        assert.equal(items[l.Item], l.ItemCode)
        local t = lines[l.InvoiceID] or { net = 0, vat = 0 }
        t.net, t.vat = t.net + math.floor(l.AmountFC * 100 + 0.5), t.vat + math.floor(l.VATAmountFC * 100 + 0.5)
        lines[l.InvoiceID] = t
      end
      local invoices = all("bulk/SalesInvoice/SalesInvoices?$select=InvoiceID,AmountFC,AmountFCExclVat," ..
        "VATAmountFC,InvoiceTo")
      assert.equal(30, #invoices)
      for _, h in ipairs(invoices) do
        local t = lines[h.InvoiceID]
        assert.truthy(t, "lines of " .. h.InvoiceID)
        assert.equal(t.net, math.floor(h.AmountFCExclVat * 100 + 0.5))
        assert.equal(t.net + t.vat, math.floor(h.AmountFC * 100 + 0.5))
        assert.truthy(accounts[h.InvoiceTo])
      end
      -- the sync rows of sales invoices are a header (LineNumber 0, ID = InvoiceID) and the lines, keyed by ID
      local sync = all("sync/SalesInvoice/SalesInvoices?$select=ID,InvoiceID,LineNumber")
      local headers, synclines = 0, 0
      for _, r in ipairs(sync) do
        if r.LineNumber == 0 then
          headers = headers + 1
          assert.equal(r.InvoiceID, r.ID)
        else
          synclines = synclines + 1
        end
      end
      assert.equal(30, headers)
      local nlines = 0
      for _ in pairs(lines) do nlines = nlines + 1 end
      assert.equal(30, nlines)
      assert.equal(#all("bulk/SalesInvoice/SalesInvoiceLines?$select=ID"), synclines)
    end)

    it("has unicode, quotes, line breaks and nulls", function()
      local _, b = get("crm/Accounts?$select=Name,Remarks,Fax&$filter=" .. escape("Name eq 'O''Brien & Zonen'"))
      assert.equal("O'Brien & Zonen", b.d.results[1].Name)
      assert.equal(helpers.json.null, b.d.results[1].Fax)
      local rows = all("bulk/CRM/Accounts?$select=Name,Remarks")
      local quoted, unicode = false, false
      for _, r in ipairs(rows) do
        if type(r.Remarks) == "string" and r.Remarks:find('"', 1, true) and r.Remarks:find("\n", 1, true) then
          quoted = true
        end
        if r.Name:find("[\xE0-\xEF]") then unicode = true end
      end
      assert.is_true(quoted)
      assert.is_true(unicode)
    end)
  end)

  describe("sync", function()
    it("pages transaction lines by 1000 in Timestamp order with an absolute __next that keeps the filter", function()
      local rows, pages = all("sync/Financial/TransactionLines?$select=ID,Timestamp&$filter=" ..
        escape("Timestamp gt 1"))
      assert.same({ 1000, 1000, 500 }, pages)
      local seen = {}
      for i, r in ipairs(rows) do
        assert.is_nil(seen[r.ID])
        seen[r.ID] = true
        if i > 1 then assert.truthy(r.Timestamp > rows[i - 1].Timestamp) end
      end
    end)

    it("filters Timestamp gt N and gt NL alike", function()
      local _, b = get("sync/Financial/TransactionLines?$select=ID,Timestamp&$top=10")
      local ts = b.d.results[5].Timestamp
      local _, plain = get("sync/Financial/TransactionLines?$select=ID,Timestamp&$filter=" ..
        escape("Timestamp gt " .. ts))
      local _, long = get("sync/Financial/TransactionLines?$select=ID,Timestamp&$filter=" ..
        escape("Timestamp gt " .. ts .. "L"))
      assert.equal(b.d.results[6].ID, plain.d.results[1].ID)
      assert.same(plain.d.results, long.d.results)
      assert.equal(1000, #plain.d.results)
    end)

    it("one Timestamp counter per division across entities: each change takes the next value", function()
      local other = sb:entity("accounts", { division = div + 1 }).timestamp
      local a = sb:change("accounts", { update = 1 })
      local t = sb:change("transactionlines", { update = 2 })
      local p = sb:change("projects", { create = 1 })
      assert.equal(a.timestamp + 2, t.timestamp)
      assert.equal(t.timestamp + 1, p.timestamp)
      local _, acc = get("sync/CRM/Accounts?$select=ID,Timestamp&$filter=" ..
        escape("Timestamp gt " .. (a.timestamp - 1)))
      assert.equal(1, #acc.d.results)
      assert.equal(a.updated[1], acc.d.results[1].ID)
      assert.equal(a.timestamp, acc.d.results[1].Timestamp)
      local _, tl = get("sync/Financial/TransactionLines?$select=ID,Timestamp&$filter=" ..
        escape("Timestamp gt " .. (a.timestamp)))
      assert.same(t.updated, { tl.d.results[1].ID, tl.d.results[2].ID })
      -- another division's counter did not move
      assert.equal(other, sb:entity("accounts", { division = div + 1 }).timestamp)
    end)

    it("SyncTimestamp answers the Timestamp of the first row modified at or after a date", function()
      local status, b = get("read/sync/Sync/SyncTimestamp?modified=" .. escape("datetime'2024-06-01'") ..
        "&endPoint=" .. escape("'TransactionLines'"))
      assert.equal(200, status)
      local r = b.d.results[1]
      assert.equal("TransactionLines", r.API)
      local ts = r.TimeStampAsBigInt
      local _, before = get("sync/Financial/TransactionLines?$select=Modified,Timestamp&$filter=" ..
        escape("Timestamp gt " .. (ts - 2)) .. "&$top=2")
      local cut = 1717200000000 -- 2024-06-01T00:00:00Z
      assert.equal(ts, before.d.results[2].Timestamp)
      assert.truthy(tonumber(before.d.results[1].Modified:match("%d+")) < cut)
      assert.truthy(tonumber(before.d.results[2].Modified:match("%d+")) >= cut)
      assert.equal(400, (get("read/sync/Sync/SyncTimestamp?modified=" .. escape("datetime'2024-06-01'"))))
      assert.equal(400, (get("read/sync/Sync/SyncTimestamp?modified=" .. escape("datetime'2024-06-01'") ..
        "&endPoint=" .. escape("'Accounts'"))))
    end)
  end)

  describe("changes and sync/Deleted", function()
    local function since(e, ts, select)
      return all(e.sync .. "?$select=" .. (select or (e.key .. ",Timestamp")) .. "&$filter=" ..
        escape("Timestamp gt " .. ts))
    end

    for _, name in ipairs{ "accounts", "contacts", "addresses", "glaccounts", "glclassifications", "items",
                           "projects", "transactionlines", "paymentterms" } do
      it(name .. ": create, update and delete show in sync/ and only the delete in sync/Deleted", function()
        local e = catalog.by_name[name]
        local start = sb:entity(name).timestamp
        local before = sb:entity(name).count
        local made = sb:change(name, { create = 2 })
        local changed = sb:change(name, { update = 3 })
        local gone = sb:change(name, { delete = 1 })
        assert.equal(2, #made.created)
        assert.equal(3, #changed.updated)
        assert.equal(1, #gone.deleted)
        local rows = since(e, start)
        local keys = {}
        for _, r in ipairs(rows) do keys[r[e.key]] = (keys[r[e.key]] or 0) + 1 end
        for _, k in ipairs(made.created) do assert.truthy(keys[k] or k == gone.deleted[1]) end
        for _, k in ipairs(changed.updated) do assert.truthy(keys[k] or k == gone.deleted[1]) end
        assert.is_nil(keys[gone.deleted[1]])
        local _, del = get("sync/Deleted?$filter=" .. escape("Timestamp gt " .. start))
        assert.equal(1, #del.d.results)
        local d = del.d.results[1]
        assert.equal(e.entity_type, d.EntityType)
        assert.equal(gone.deleted[1], d.EntityKey)
        assert.equal(div, d.Division)
        assert.equal(gone.timestamp, d.Timestamp)
        assert.truthy(d.DeletedDate:match("^/Date%(%d+%)/$"))
        assert.truthy(d.ID:match("^%x+%-"))
        assert.equal(before + 2 - 1, sb:entity(name).count)
        if e.path then
          assert.equal(404, (get(e.path .. "(guid'" .. gone.deleted[1] .. "')")))
        end
      end)
    end

    it("salesinvoices: an invoice's header and lines change together; a deleted invoice is one Deleted row", function()
      local start = sb:entity("salesinvoices").timestamp
      local made = sb:change("salesinvoices", { create = 1 })
      local _, rows = nil, all("sync/SalesInvoice/SalesInvoices?$select=ID,InvoiceID,LineNumber&$filter=" ..
        escape("Timestamp gt " .. start))
      assert.truthy(#rows >= 2)
      for _, r in ipairs(rows) do assert.equal(made.created[1], r.InvoiceID) end
      local upd = sb:change("salesinvoices", { keys = made.created, update = 1 })
      assert.same(made.created, upd.updated)
      local gone = sb:change("salesinvoices", { keys = made.created, delete = 1 })
      local _, del = get("sync/Deleted?$filter=" .. escape("Timestamp gt " .. upd.timestamp))
      assert.equal(1, #del.d.results)
      assert.equal(13, del.d.results[1].EntityType)
      assert.equal(made.created[1], del.d.results[1].EntityKey)
      assert.equal(gone.timestamp, del.d.results[1].Timestamp)
      assert.equal(404, (get("salesinvoice/SalesInvoices(guid'" .. made.created[1] .. "')")))
      local _, after = get("bulk/SalesInvoice/SalesInvoiceLines?$select=ID&$filter=" ..
        escape("InvoiceID eq guid'" .. made.created[1] .. "'"))
      assert.equal(0, #after.d.results)
      -- no EntityType for a single invoice line: the change endpoint says what to do instead
      local status = helpers.http("POST", sb:url("/_sandbox/change?entity=salesinvoicelines&delete=1"),
        { cafile = sb.cafile, headers = sb:control_headers() })
      assert.equal(400, status)
    end)

    it("REST writes change the Timestamp too; DELETE leaves a sync/Deleted row", function()
      local start = sb:entity("contacts").timestamp
      local status, made = sb:api("POST", "/api/v1/" .. div .. "/crm/Contacts", token,
        { body = { FirstName = "Zoë", LastName = "d'Artagnan" } })
      assert.equal(201, status)
      local id = made.d.ID
      assert.equal(204, (sb:api("PUT", "/api/v1/" .. div .. "/crm/Contacts(guid'" .. id .. "')", token,
        { body = { Email = "zoe@example.com" } })))
      assert.equal(204, (sb:api("DELETE", "/api/v1/" .. div .. "/crm/Contacts(guid'" .. id .. "')", token)))
      local _, del = get("sync/Deleted?$filter=" .. escape("Timestamp gt " .. start))
      assert.equal(1, #del.d.results)
      assert.equal(5, del.d.results[1].EntityType)
      assert.equal(id, del.d.results[1].EntityKey)
      assert.equal(start + 3, del.d.results[1].Timestamp)
      assert.equal(405, (sb:api("POST", "/api/v1/" .. div .. "/financialtransaction/TransactionLines", token,
        { body = { Description = "x" } })))
    end)

    it("the change endpoint takes fields and keys; the entity endpoint returns every live row", function()
      local rows = sb:entity("items", { view = "regular" }).rows
      local key = rows[3].ID
      local res = sb:change("items", { keys = { key }, update = 1, fields = { Description = "Nieuw – \"Ø\"" } })
      assert.same({ key }, res.updated)
      local _, one = get("logistics/Items(guid'" .. key .. "')?$select=Description,Modified")
      assert.equal("Nieuw – \"Ø\"", one.d.Description)
      local sync = sb:entity("items")
      assert.equal("sync", sync.view)
      assert.equal(#rows, sync.count)
      assert.equal(key, sync.rows[#sync.rows].ID)
      assert.equal(res.timestamp, sync.rows[#sync.rows].Timestamp)
      -- the replica's view and the API's agree, row for row
      local api = all("sync/Logistics/Items?$select=ID,Description,Timestamp")
      assert.equal(#api, sync.count)
      for i, r in ipairs(api) do
        assert.equal(r.ID, sync.rows[i].ID)
        assert.equal(r.Description, sync.rows[i].Description)
        assert.equal(r.Timestamp, sync.rows[i].Timestamp)
      end
    end)
  end)

  describe("mandatory filters (an app setting at Exact)", function()
    after_each(function() sb:configure{ mandatory_filters = false } end)

    it("refuse regular and bulk lists without a filter on a listed field, with Exact's message", function()
      sb:configure{ mandatory_filters = true }
      local status, body = get("crm/Accounts")
      assert.equal(400, status)
      assert.truthy(body.error.message.value:find("^This endpoint has mandatory filtering applied%. A GET request " ..
        "for this endpoint must have a %$filter parameter with one of the following fields in the url:Accountant,"))
      assert.equal(400, (get("bulk/Financial/TransactionLines?$select=ID")))
      assert.equal(400, (get("crm/Accounts?$filter=" .. escape("Website eq 'x'"))))
      assert.equal(200, (get("crm/Accounts?$filter=" .. escape("City eq 'Delft'"))))
      assert.equal(200, (get("bulk/Financial/TransactionLines?$select=ID&$filter=" ..
        escape("FinancialYear eq 2023"))))
      -- sync endpoints need none
      assert.equal(200, (get("sync/Financial/TransactionLines?$select=ID")))
      sb:configure{ mandatory_filters = false }
      assert.equal(200, (get("crm/Accounts")))
    end)
  end)

  describe("divisions", function()
    it("system/Divisions and system/AllDivisions list every company with Exact's fields", function()
      for _, which in ipairs{ "system/Divisions", "system/AllDivisions" } do
        local status, body = get(which)
        assert.equal(200, status)
        local rows = body.d.results
        assert.equal(3, #rows)
        assert.same({ div, div + 1, div + 2 }, { rows[1].Code, rows[2].Code, rows[3].Code })
        assert.is_true(rows[1].Current)
        assert.is_false(rows[2].Current)
        check_types(rows[1], catalog.division_types, which)
      end
    end)

    it("each has its own administration", function()
      local _, a = get("crm/Accounts?$top=1&$select=ID,Name", div)
      local _, b = get("crm/Accounts?$top=1&$select=ID,Name", div + 2)
      assert.equal(a.d.results[1].Name, b.d.results[1].Name)
      assert.are_not.equal(a.d.results[1].ID, b.d.results[1].ID)
      sb:change("accounts", { division = div + 2, delete = 1 })
      local _, da = get("sync/Deleted", div)
      local _, db = get("sync/Deleted", div + 2)
      assert.equal(0, #da.d.results)
      assert.equal(1, #db.d.results)
      assert.equal(div + 2, db.d.results[1].Division)
      assert.equal(403, (get("crm/Accounts", div + 3)))
    end)

    it("and its own rate-limit budget: division A spent, B still answers", function()
      sb:limits{ minutely = 3, window = 1e6 }
      for _ = 1, 3 do assert.equal(200, (get("crm/Accounts?$top=1", div))) end
      local status, _, h = get("crm/Accounts?$top=1", div)
      assert.equal(429, status)
      assert.equal("0", h["x-ratelimit-minutely-remaining"])
      local s2, _, h2 = get("crm/Accounts?$top=1", div + 1)
      assert.equal(200, s2)
      assert.equal("2", h2["x-ratelimit-minutely-remaining"])
      sb:limits{ minutely = 60, daily = 4 }
      -- the daily budget is per division too: div spent 3 of 4 today
      assert.equal(200, (get("crm/Accounts?$top=1", div)))
      assert.equal(429, (get("crm/Accounts?$top=1", div)))
      assert.equal(200, (get("crm/Accounts?$top=1", div + 2)))
    end)
  end)
end)

describe("a large sandbox", function()
  it("starts a 100 000-row administration at once and serves its last sync page", function()
    local sb = helpers.sandbox{ sizes = { transactionlines = 100000 } }
    local token = sb:tokens().access_token
    local _, probe = sb:api("GET", "/api/v1/" .. sb.division .. "/sync/Financial/TransactionLines?$select=ID," ..
      "Timestamp&$top=1", token)
    local first = probe.d.results[1].Timestamp
    local status, body = sb:api("GET", "/api/v1/" .. sb.division .. "/sync/Financial/TransactionLines?$select=ID," ..
      "Timestamp&$filter=" .. helpers.escape("Timestamp gt " .. (first + 99000 - 1)), token)
    assert.equal(200, status)
    assert.equal(1000, #body.d.results)
    assert.is_nil(body.d.__next)
    assert.equal(first + 99999, body.d.results[1000].Timestamp)
    sb:stop()
  end)
end)
