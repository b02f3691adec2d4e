-- The sandbox's bulk/ and sync/ endpoints page by 1000 (crm/ by 60 is in 10-sandbox_api_spec).
local helpers = require "helpers"

describe("sandbox bulk/ and sync/ paging", function()
  local sb = helpers.use_sandbox{ accounts = 1001, reset = false }
  local token
  setup(function()
    token = sb:tokens().access_token
  end)

  local function walk(url)
    local sizes, seen, n = {}, {}, 0
    while url do
      local status, body = sb:api("GET", url, token)
      assert.equal(200, status)
      sizes[#sizes + 1] = #body.d.results
      for _, r in ipairs(body.d.results) do
        assert.is_nil(seen[r.ID])
        seen[r.ID] = true
        n = n + 1
      end
      url = body.d.__next
      if url then
        local prefix = sb.base_url .. "/api/v1/" .. sb.division .. "/"
        assert.equal(prefix, url:sub(1, #prefix))
        local q = helpers.query(url)
        assert.truthy(q["$select"])
        assert.truthy(q["$skiptoken"])
      end
    end
    return sizes, n
  end

  it("bulk/CRM/Accounts pages by 1000 with an absolute __next", function()
    local sizes, n = walk("/api/v1/" .. sb.division .. "/bulk/CRM/Accounts?$select=ID,Name")
    assert.same({ 1000, 1 }, sizes)
    assert.equal(1001, n)
  end)

  it("sync/CRM/Accounts pages by 1000 in Timestamp order, keeping the filter", function()
    local sizes, n = walk("/api/v1/" .. sb.division .. "/sync/CRM/Accounts?$select=ID,Timestamp&$filter=" ..
      helpers.escape("Timestamp gt 1"))
    assert.same({ 1000, 1 }, sizes)
    assert.equal(1001, n)
  end)
end)
