--- Generated administrations: every row of every entity is a pure function of (division, entity, index), so a
-- division of any size costs nothing until it is read. References resolve (a transaction line's Account is a
-- generated account of the same division, its GLAccount a generated G/L account, an invoice line's Item a
-- generated item), amounts add up (each financial entry balances to zero; an invoice's totals are the sums of
-- its lines), and IDs encode their index so a $skiptoken=guid'…' or a key finds its row without a search.
local ngx = ngx
local string, math, os = string, math, os
local tostring, tonumber, type, ipairs = tostring, tonumber, type, ipairs

local _M = {}

local md5, crc = ngx.md5, ngx.crc32_long
local fmt, floor = string.format, math.floor

local TWO32 = 4294967296

-- a stable pseudo-random number for (what, index)
local function rnd(what, i, n)
  return crc(what .. ":" .. i) % n
end
_M.rnd = rnd

local masks = {}
local function mask(kind, div)
  local k = kind .. ":" .. div
  local m = masks[k]
  if not m then
    m = tonumber(md5(k):sub(1, 8), 16)
    masks[k] = m
  end
  return m
end

--- guid(kind, div, i): a version-4-looking GUID whose last 8 hex digits hide i
function _M.guid(kind, div, i)
  local h = md5(kind .. ":" .. div .. ":" .. i)
  local variant = ("89ab"):sub(tonumber(h:sub(17, 17), 16) % 4 + 1, tonumber(h:sub(17, 17), 16) % 4 + 1)
  return h:sub(1, 8) .. "-" .. h:sub(9, 12) .. "-4" .. h:sub(14, 16) .. "-" .. variant .. h:sub(18, 20) .. "-" ..
    h:sub(21, 24) .. fmt("%08x", (i + mask(kind, div)) % TWO32)
end

--- index_of(kind, div, guid) --> i | nil: the index a guid of ours encodes
function _M.index_of(kind, div, g)
  if type(g) ~= "string" or #g ~= 36 then return nil end
  g = g:lower()
  local x = tonumber(g:sub(29, 36), 16)
  if not x then return nil end
  local i = (x - mask(kind, div)) % TWO32
  if i < 1 or _M.guid(kind, div, i) ~= g then return nil end
  return i
end

function _M.pad_code(code)
  code = tostring(code)
  if #code >= 18 then return code end
  return string.rep(" ", 18 - #code) .. code
end

local function date(ms) return "/Date(" .. fmt("%.0f", ms) .. ")/" end
_M.date = date

local function cents(c) return floor(c + 0.5) / 100 end

local DAY = 86400000
local EPOCH = 1672531200000 -- 2023-01-01T00:00:00Z: the administration's first day

-- who did it: a few users of the administration
local USERS = { { "5a8e1d30-7c6b-4e2f-9a14-3b0c5d7e9f21", "Sandbox Gebruiker" },
                { "8c21f0a4-3d5e-4b6f-8a71-92c3d4e5f607", "Jeroen de Vries" },
                { "d4f7a2b9-1e3c-4a5d-b6e8-7f9a0b1c2d3e", "Aïcha El Amrani" } }
_M.users = USERS

local function stamp(row, what, i, created)
  local u = USERS[rnd(what, i, #USERS) + 1]
  row.Created, row.Modified = date(created), date(created + DAY)
  row.Creator, row.CreatorFullName = u[1], u[2]
  row.Modifier, row.ModifierFullName = u[1], u[2]
end

-- accounts ------------------------------------------------------------------------------------------

local BASES = {
  "Bäckerei Müller", "Café de Flore", "Žižek Consulting", "Ørsted Vind", "Smørrebrød & Co",
  "Crème Brûlée BV", "Łódź Trading", "Åkesson AB", "Garçon Foods", "Straßenbau GmbH",
  "Ñandú SL", "Dvořák Muziek", "Šťastný s.r.o.", "Ćevapi Huis", "İstanbul Halı",
  "Gödel Logica", "Schrödinger Labs", "Fjällräven Buiten", "Klöckner Staal", "Zoë's Bakkerij",
  "O'Brien & Zonen", "日本商事", "Αθήνα Εμπόριο", "Москва Трейд", "Ūdens Serviss",
}
local CITIES = { "Amsterdam", "Delft", "München", "Liège", "Zürich", "Malmö", "Kraków", "Köln" }
local COUNTRIES = { "NL", "NL", "DE", "BE", "CH", "SE", "PL", "DE" }
local COUNTRY_NAMES = { NL = "Nederland", DE = "Duitsland", BE = "België", CH = "Zwitserland", SE = "Zweden",
                        PL = "Polen" }

function _M.account_name(i)
  local b = BASES[(i - 1) % #BASES + 1]
  return i <= #BASES and b or (b .. " " .. i)
end

local function account_ref(ctx, j)
  local n = ctx.size.accounts
  if n < 1 then return nil end
  return (j - 1) % n + 1
end

-- the G/L chart every administration starts from (then "Diversen N" accounts up to the size asked)
local CHART = {
  { "0100", "Gebouwen", "B", "D", 30 }, { "1000", "Kas", "B", "D", 10 }, { "1100", "Bank", "B", "D", 12 },
  { "1300", "Debiteuren", "B", "D", 20 }, { "1600", "Crediteuren", "B", "C", 22 },
  { "1500", "Te betalen btw hoog", "B", "C", 24 }, { "3000", "Voorraad", "B", "D", 32 },
  { "4000", "Lonen en salarissen", "W", "D", 121 }, { "4300", "Huisvestingskosten", "W", "D", 121 },
  { "7000", "Kostprijs omzet", "W", "D", 111 }, { "8000", "Omzet hoog", "W", "C", 110 },
  { "8100", "Omzet laag", "W", "C", 110 }, { "8200", "Omzet diensten", "W", "C", 110 },
}
local GL_TYPES = { [10] = "Kas", [12] = "Bank", [20] = "Debiteuren", [22] = "Crediteuren", [24] = "Btw",
                   [30] = "Vaste activa", [32] = "Voorraad", [110] = "Omzet", [111] = "Kostprijs van de omzet",
                   [121] = "Algemene kosten" }
local GL = { debtors = 4, creditors = 5, vat = 6, stock = 7, cost = 10, revenue = 11 }

local function gl_ref(ctx, which)
  local n = ctx.size.glaccounts
  if n < 1 then return nil end
  local i = GL[which] or which
  return (i - 1) % n + 1
end

local function gl_info(i)
  local c = CHART[i]
  if c then return c[1], c[2], c[3], c[4], c[5] end
  return tostring(9000 + i), "Diversen " .. i .. " – \"overig\"", "W", "D", 121
end
_M.gl_info = gl_info

local function ref(ctx, row, prefix, kind, j, code, name)
  if not j then return end
  row[prefix] = _M.guid(kind, ctx.div, j)
  if code then row[prefix .. "Code"] = code end
  if name then row[prefix .. "Name"] = name end
end

local function set_gl(ctx, row, prefix, j)
  if not j then return end
  local code, desc = gl_info(j)
  row[prefix] = _M.guid("glaccounts", ctx.div, j)
  row[prefix .. "Code"] = code
  row[prefix .. "Description"] = desc
end

local gen = {}

gen.accounts = function(ctx, i)
  local div = ctx.div
  local c = (i - 1) % #CITIES + 1
  local created = 1700000000000 + i * 3600000
  local row = {
    ID = _M.guid("accounts", div, i), Code = _M.pad_code(i), Name = _M.account_name(i), City = CITIES[c],
    Country = COUNTRIES[c], CountryName = COUNTRY_NAMES[COUNTRIES[c]], Postcode = tostring(1000 + i) .. " AB",
    AddressLine1 = "Hoofdstraat " .. i, Email = "info@account" .. i .. ".example",
    Phone = "+31 20 555 " .. fmt("%04d", i), Website = "https://account" .. i .. ".example",
    Status = (i % 7 == 0) and "S" or "C", IsSupplier = (i % 5 == 0), IsSales = true,
    VATNumber = "NL" .. fmt("%09d", i) .. "B01", Division = div, Blocked = false, Type = "A",
    Language = "NL", LanguageDescription = "Nederlands", SearchCode = fmt("ACC%06d", i),
    ChamberOfCommerce = fmt("%08d", 30000000 + i), PaymentConditionSales = "30",
    PaymentConditionSalesDescription = "30 dagen", SalesVATCode = "2", SalesVATCodeDescription = "Btw hoog 21%",
    SalesCurrency = "EUR", SalesCurrencyDescription = "Euro", SecurityLevel = 10,
    Latitude = 52 + (i % 100) / 1000, Longitude = 4 + (i % 100) / 1000, CreditLineSales = (i % 3) * 5000,
    StartDate = date(created), AccountManagerHID = 1, DiscountSales = 0, DiscountPurchase = 0,
    -- every 11th has remarks with quotes and a line break; every 13th a Fax of null (default)
    Remarks = (i % 11 == 0) and ("Let op: \"spoed\"\nbel eerst, 'niet' mailen") or nil,
  }
  stamp(row, "accounts" .. div, i, created)
  row.Modified = date(created + DAY)
  if i <= ctx.size.contacts then row.MainContact = _M.guid("contacts", div, i) end
  local gar = gl_ref(ctx, "debtors")
  if gar then row.GLAR = _M.guid("glaccounts", div, gar) end
  local gap = gl_ref(ctx, "creditors")
  if gap then row.GLAP = _M.guid("glaccounts", div, gap) end
  return row
end

local FIRST = { "Anna", "Bram", "Chloé", "Daan", "Eline", "Fatima", "Guus", "Hélène", "Ivo", "Jasmijn", "Kees",
                "Lotte", "Mehmet", "Noor", "Olaf", "Priya" }
local LAST = { "de Vries", "Jansen", "van den Berg", "Bakker", "Müller", "O'Neill", "Dubois", "Nowak", "Yılmaz",
               "Smit", "Visser", "Janssens" }

gen.contacts = function(ctx, i)
  local div = ctx.div
  local a = account_ref(ctx, i)
  local first, last = FIRST[(i - 1) % #FIRST + 1], LAST[rnd("last" .. div, i, #LAST) + 1]
  local row = {
    ID = _M.guid("contacts", div, i), Division = div, FirstName = first, LastName = last,
    FullName = first .. " " .. last, Initials = first:sub(1, 1) .. ".", Gender = (i % 2 == 0) and "F" or "M",
    Email = "contact" .. i .. "@account" .. (a or 0) .. ".example", Phone = "+31 6 " .. fmt("%08d", 10000000 + i),
    BusinessEmail = "contact" .. i .. "@account" .. (a or 0) .. ".example", JobTitleDescription =
      (i % 3 == 0) and "Financieel directeur" or "Inkoper", Language = "NL", HID = i, IsMainContact = false,
    IsMailingExcluded = false, Title = (i % 2 == 0) and "MEVR" or "DHR",
    Notes = (i % 9 == 0) and "Spreekt liever Frans; \"voicemail\" uit" or nil,
    BirthDate = (i % 4 == 0) and date(EPOCH - (25 + i % 30) * 365 * DAY) or nil,
  }
  if a then
    row.Account = _M.guid("accounts", div, a)
    row.AccountName = _M.account_name(a)
    row.AccountIsCustomer = true
    row.AccountIsSupplier = (a % 5 == 0)
    row.IsMainContact = (i == a and i <= ctx.size.contacts)
    if a <= ctx.size.contacts then row.AccountMainContact = _M.guid("contacts", div, a) end
    local c = (a - 1) % #CITIES + 1
    row.City, row.Country = CITIES[c], COUNTRIES[c]
  end
  stamp(row, "contacts" .. div, i, EPOCH + i * 1800000)
  return row
end

gen.addresses = function(ctx, i)
  local div = ctx.div
  local a = account_ref(ctx, i)
  local n = ctx.size.accounts
  local main = n > 0 and i <= n
  local row = { ID = _M.guid("addresses", div, i), Division = div, Main = main, Type = main and 1 or 3,
                AddressLine1 = (main and "Hoofdstraat " or "Magazijnweg ") .. (a or i),
                Postcode = tostring(1000 + (a or i) % 9000) .. " AB", Source = 1 }
  if a then
    row.Account = _M.guid("accounts", div, a)
    row.AccountName = _M.account_name(a)
    row.AccountIsSupplier = (a % 5 == 0)
    local c = (a - 1) % #CITIES + 1
    row.City, row.Country, row.CountryName = CITIES[c], COUNTRIES[c], COUNTRY_NAMES[COUNTRIES[c]]
    if a <= ctx.size.contacts then
      row.Contact = _M.guid("contacts", div, a)
    end
  end
  stamp(row, "addresses" .. div, i, EPOCH + i * 1800000 + 60000)
  return row
end

local CLASSES = { "Activa", "Vaste activa", "Vlottende activa", "Passiva", "Eigen vermogen", "Vreemd vermogen",
                  "Opbrengsten", "Kosten", "Personeelskosten", "Huisvesting" }
local TAXONOMY = "e3a1c2d4-5b6f-4a7e-8c9d-0a1b2c3d4e5f"

gen.glclassifications = function(ctx, i)
  local div = ctx.div
  local name = CLASSES[(i - 1) % #CLASSES + 1] .. (i > #CLASSES and (" " .. i) or "")
  local row = { ID = _M.guid("glclassifications", div, i), Division = div, Code = fmt("RGS%03d", i),
                Name = name, Description = name, Abstract = i <= 2, Nillable = false, IsTupleSubElement = false,
                Balance = (i % 2 == 1) and "debit" or "credit", PeriodType = (i % 3 == 0) and "duration" or "instant",
                TaxonomyNamespace = TAXONOMY, TaxonomyNamespaceDescription = "RGS 3.5",
                Type = "f1e2d3c4-b5a6-4978-8a6b-5c4d3e2f1a0b" }
  if i > 1 then row.Parent = _M.guid("glclassifications", div, floor(i / 2)) end
  stamp(row, "glclassifications" .. div, i, EPOCH - 30 * DAY + i * 60000)
  return row
end

gen.glaccounts = function(ctx, i)
  local div = ctx.div
  local code, desc, btype, side, t = gl_info(i)
  local row = { ID = _M.guid("glaccounts", div, i), Division = div, Code = code, Description = desc,
                SearchCode = code, BalanceType = btype, BalanceSide = side, Type = t, TypeDescription = GL_TYPES[t],
                IsBlocked = false, Compress = false, Matching = (t == 20 or t == 22), RevalueCurrency = false,
                UseCostcenter = 0, UseCostunit = 0, AllowCostsInSales = 0, ExcludeVATListing = 0,
                ExpenseNonDeductiblePercentage = 0, PrivatePercentage = 0, VATNonDeductiblePercentage = 0 }
  if t == 110 then row.VATCode, row.VATDescription = "2", "Btw hoog 21%" end
  stamp(row, "glaccounts" .. div, i, EPOCH - 20 * DAY + i * 60000)
  return row
end

local GOODS = { "Bureaustoel \"Ergo\"", "Koffiebonen 1 kg", "Beeldscherm 27\"", "Crème de la crème", "Stekkerdoos",
                "Señal kabel 5 m", "Notitieblok A5", "Adviesuur", "Zonnepaneel 400 Wp", "Fietsbel – klassiek" }

function _M.item_price_cents(i) return 250 + rnd("price", i, 49750) end

gen.items = function(ctx, i)
  local div = ctx.div
  local service = (i % 8 == 0)
  local price = _M.item_price_cents(i)
  local row = { ID = _M.guid("items", div, i), Division = div, Code = fmt("ART-%05d", i),
                Description = GOODS[(i - 1) % #GOODS + 1] .. (i > #GOODS and (" #" .. i) or ""),
                ExtraDescription = (i % 6 == 0) and "Levering binnen 2 werkdagen; 'op=op'" or nil,
                IsSalesItem = true, IsPurchaseItem = not service, IsStockItem = not service, IsSerialItem = false,
                IsFractionAllowedItem = false, IsPackageItem = false, IsSubcontractedItem = false,
                IsTime = service and 1 or 0, IsWebshopItem = (i % 2), IsMakeItem = 0, IsBatchItem = 0,
                IsNewContract = 0, IsOnDemandItem = 0,
                IsTaxableItem = 1, IsRegistrationCodeItem = 0, CopyRemarks = 0,
                Unit = service and "uur" or "stuk", UnitDescription = service and "Uur" or "Stuk",
                UnitType = service and "T" or "O", SalesVatCode = "2", SalesVatCodeDescription = "Btw hoog 21%",
                CostPriceStandard = cents(price * 0.6), CostPriceNew = cents(price * 0.6),
                AverageCost = cents(price * 0.6),
                CostPriceCurrency = "EUR", Barcode = service and nil or fmt("8712345%06d", i),
                Stock = service and 0 or (rnd("stock" .. div, i, 500)), NetWeight = service and 0 or 1.5,
                GrossWeight = service and 0 or 1.75, ItemGroup = "b2c3d4e5-f6a7-4b8c-9d0e-1f2a3b4c5d6e",
                ItemGroupCode = "001", ItemGroupDescription = "Standaard", SecurityLevel = 10,
                StartDate = date(EPOCH), UseExplosion = 0 }
  set_gl(ctx, row, "GLRevenue", gl_ref(ctx, service and 13 or "revenue"))
  set_gl(ctx, row, "GLCosts", gl_ref(ctx, "cost"))
  if not service then set_gl(ctx, row, "GLStock", gl_ref(ctx, "stock")) end
  stamp(row, "items" .. div, i, EPOCH - 10 * DAY + i * 600000)
  return row
end

gen.projects = function(ctx, i)
  local div = ctx.div
  local a = account_ref(ctx, i * 3)
  local start = EPOCH + i * 7 * DAY
  local row = { ID = _M.guid("projects", div, i), Division = div, DivisionName = ctx.division_name,
                Code = fmt("P%04d", i), Description = "Implementatie " .. (a and _M.account_name(a) or i),
                Type = (i % 3 == 0) and 3 or 2, TypeDescription = (i % 3 == 0) and "Nacalculatie" or "Vaste prijs",
                StartDate = date(start), EndDate = (i % 4 == 0) and date(start + 180 * DAY) or nil,
                BudgetedAmount = 1000 * (i % 20 + 1), BudgetedCosts = 600 * (i % 20 + 1),
                BudgetedRevenue = 1000 * (i % 20 + 1), BudgetType = 1, BudgetTypeDescription = "Uren",
                BlockEntry = false, BlockInvoicing = false, BlockPlanning = false, BlockPurchasing = false,
                BlockRebilling = false, AllowAdditionalInvoicing = true, AllowMemberEntryOnly = false,
                EnableWorkInProgress = false, HasWBSLines = false, InvoiceAsQuoted = false,
                IncludeSpecificationInInvoicePdf = false, UseBillingMilestones = false, IncludeInvoiceSpecification = 0,
                IsWBSRequiredForEntry = 0, PrepaidType = 0, MarkupPercentage = 0, SalesTimeQuantity = 0,
                TimeQuantityToAlert = 0, BudgetOverrunHours = 0, CostsAmountFC = 0,
                Notes = (i % 5 == 0) and "Fase 2: \"go-live\" na akkoord" or nil,
                Manager = USERS[2][1], ManagerFullname = USERS[2][2] }
  if a then
    ref(ctx, row, "Account", "accounts", a, _M.pad_code(a), _M.account_name(a))
    if a <= ctx.size.contacts then row.AccountContact = _M.guid("contacts", div, a) end
  end
  stamp(row, "projects" .. div, i, start - DAY)
  return row
end

-- financial entries ------------------------------------------------------------------------------------
-- N transaction lines form entries of 3 lines (receivable, revenue, VAT), the last one or two entries of 2
-- lines (receivable, revenue without VAT) when N is not a multiple of 3; every entry sums to zero.

-- n lines --> entries of 3 lines, entries of 2 lines (n = 1: one line of 0.00)
local function entries_layout(n)
  local r = n % 3
  if n < 2 then return 0, 0 end
  if n == 2 then return 0, 1 end
  if r == 0 then return n / 3, 0 end
  if r == 2 then return (n - 2) / 3, 1 end
  return (n - 4) / 3, 2
end

--- entries(n) --> how many financial entries n transaction lines make
function _M.entries(n)
  if n == 1 then return 1 end
  local e3, e2 = entries_layout(n)
  return e3 + e2
end

-- line i --> entry, position (1 receivable, 2 revenue, 3 VAT), lines in that entry
local function entry_of(n, i)
  local e3, e2 = entries_layout(n)
  if i > n then -- created later: whole entries of 3 lines after the generated ones
    local j = i - n
    return e3 + e2 + floor((j - 1) / 3) + 1, (j - 1) % 3 + 1, 3
  end
  if n == 1 then return 1, 1, 1 end
  if i <= 3 * e3 then return floor((i - 1) / 3) + 1, (i - 1) % 3 + 1, 3 end
  local j = i - 3 * e3
  return e3 + floor((j - 1) / 2) + 1, (j - 1) % 2 + 1, 2
end

-- an entry's facts: date, account, net and VAT in cents
local function entry_facts(ctx, e, lines)
  local div = ctx.div
  local day = EPOCH + floor((e - 1) * (1000 * DAY) / math.max(1, ctx.entries))
  local net = 1000 + rnd("net" .. div, e, 499000)
  local vat = lines == 3 and floor(net * 0.21 + 0.5) or 0
  if lines == 1 then net = 0 end
  return day, account_ref(ctx, e * 7 + 1), net, vat
end

gen.transactionlines = function(ctx, i)
  local div = ctx.div
  local n = ctx.size.transactionlines
  local e, pos, lines = entry_of(n, i)
  local day, a, net, vat = entry_facts(ctx, e, lines)
  local d = os.date("!*t", floor(day / 1000))
  local amount, glk
  if pos == 1 then amount, glk = net + vat, "debtors"
  elseif pos == 2 then amount, glk = -net, ((e % 3 == 0) and 12 or "revenue")
  else amount, glk = -vat, "vat" end
  local row = {
    ID = _M.guid("transactionlines", div, i), Division = div, EntryID = _M.guid("entries", div, e),
    EntryNumber = 23000000 + e, LineNumber = pos - 1, LineType = 0, JournalCode = "70",
    JournalDescription = "Verkoopboek", Type = 20, Status = (e % 10 == 0) and 20 or 50,
    Date = date(day), DueDate = date(day + 30 * DAY), FinancialYear = d.year, FinancialPeriod = d.month,
    Currency = "EUR", ExchangeRate = 1, AmountDC = cents(amount), AmountFC = cents(amount),
    InvoiceNumber = 23000000 + e, YourRef = (e % 4 == 0) and ("PO-" .. e) or nil,
    Description = "Factuur " .. (23000000 + e) .. (a and (" – " .. _M.account_name(a)) or ""),
    Quantity = 0, DocumentNumber = 0, OrderNumber = 0, ExtraDutyAmountFC = 0, ExtraDutyPercentage = 0,
    PaymentDiscountAmount = 0, AmountVATBaseFC = 0, AmountVATFC = 0, VATPercentage = 0,
  }
  if pos == 2 then
    row.VATCode, row.VATCodeDescription, row.VATPercentage = "2", "Btw hoog 21%", lines == 3 and 0.21 or 0
    row.AmountVATBaseFC, row.AmountVATFC, row.VATType = cents(net), cents(vat), "S"
    row.Quantity = 1
  end
  if a then ref(ctx, row, "Account", "accounts", a, _M.pad_code(a), _M.account_name(a)) end
  set_gl(ctx, row, "GLAccount", gl_ref(ctx, glk))
  stamp(row, "tl" .. div, e, day)
  return row
end

-- one payment term per entry: the receivable of entry i
gen.paymentterms = function(ctx, i)
  local div = ctx.div
  local n = ctx.size.transactionlines
  local lines = (n == 1 and 1) or (i > entries_layout(n) and 2) or 3
  local day, a, net, vat = entry_facts(ctx, i, lines)
  local total = net + vat
  local paid = (i % 3 ~= 0)
  local e3 = entries_layout(n)
  local first_line = (n == 1 and 1) or (i <= e3 and (i - 1) * 3 + 1) or (3 * e3 + (i - e3 - 1) * 2 + 1)
  local row = {
    ID = _M.guid("paymentterms", div, i), Division = div, EntryID = _M.guid("entries", div, i),
    EntryNumber = 23000000 + i, InvoiceNumber = 23000000 + i, InvoiceDate = date(day), EntryDate = date(day),
    DueDate = date(day + 30 * DAY), TransactionDueDate = date(day + 30 * DAY), Currency = "EUR", RateFC = 1,
    AmountDC = cents(total), AmountFC = cents(total), TransactionAmountDC = cents(total),
    TransactionAmountFC = cents(total), AmountDiscountDC = 0, AmountDiscountFC = 0, Journal = "70",
    JournalDescription = "Verkoopboek", Description = "Factuur " .. (23000000 + i), PaymentCondition = "30",
    PaymentConditionDescription = "30 dagen", PaymentDays = 30, PaymentDaysDiscount = 0,
    PaymentDiscountPercentage = 0, PaymentMethod = "B", IsFullyPaid = paid, Status = paid and 50 or 20,
    LastPaymentDate = paid and date(day + (10 + i % 20) * DAY) or nil, Source = 1, TransactionType = 20,
    TransactionStatus = 50, TransactionIsReversal = false, LineType = 1, ApprovalStatus = 1,
    TransactionReportingYear = os.date("!*t", floor(day / 1000)).year,
    TransactionReportingPeriod = os.date("!*t", floor(day / 1000)).month,
    TransactionEntryID = _M.guid("entries", div, i), TransactionID = _M.guid("transactionlines", div, first_line),
  }
  if a then
    ref(ctx, row, "Account", "accounts", a, _M.pad_code(a), _M.account_name(a))
    local c = (a - 1) % #CITIES + 1
    row.AccountCountry = COUNTRIES[c]
  end
  set_gl(ctx, row, "GLAccount", gl_ref(ctx, "debtors"))
  stamp(row, "tl" .. div, i, day)
  return row
end

-- sales invoices ----------------------------------------------------------------------------------------
-- Invoice k has ((k-1) % 4) + 1 lines. Its sync rows: a header (LineNumber 0, ID = InvoiceID) then its lines.
-- In a cycle of 4 invoices: 10 lines, 14 sync rows.

local CUM_ROWS = { 0, 2, 5, 9 }   -- first sync row of invoice r+1 within its cycle (0-based)
local CUM_LINES = { 0, 1, 3, 6 }  -- first line of invoice r+1 within its cycle (0-based)

function _M.invoice_lines(k) return (k - 1) % 4 + 1 end

--- first_row(k): the sync row index of invoice k's header
function _M.first_row(k)
  local q, r = floor((k - 1) / 4), (k - 1) % 4
  return 14 * q + CUM_ROWS[r + 1] + 1
end

--- rows(k): sync rows of invoices 1..k
function _M.invoice_rows(k)
  if k < 1 then return 0 end
  return _M.first_row(k) + _M.invoice_lines(k)
end

--- sync row s --> invoice k, position (0 header, 1.. lines)
function _M.row_invoice(s)
  local q, rem = floor((s - 1) / 14), (s - 1) % 14
  local r = 3
  while CUM_ROWS[r + 1] > rem do r = r - 1 end
  return 4 * q + r + 1, rem - CUM_ROWS[r + 1]
end

--- line L (1-based, over all invoices) --> sync row
function _M.line_row(l)
  local q, rem = floor((l - 1) / 10), (l - 1) % 10
  local r = 3
  while CUM_LINES[r + 1] > rem do r = r - 1 end
  local k = 4 * q + r + 1
  return _M.first_row(k) + (rem - CUM_LINES[r + 1]) + 1, k
end

--- sync row of a line --> line number L
function _M.row_line(s)
  local k, pos = _M.row_invoice(s)
  if pos == 0 then return nil end
  local q, r = floor((k - 1) / 4), (k - 1) % 4
  return 10 * q + CUM_LINES[r + 1] + pos
end

--- lines of invoices 1..k
function _M.invoice_line_count(k)
  if k < 1 then return 0 end
  local q, r = floor((k - 1) / 4), (k - 1) % 4
  return 10 * q + CUM_LINES[r + 1] + r + 1
end

local function line_facts(ctx, k, pos)
  local div = ctx.div
  local ni = ctx.size.items
  local item = ni > 0 and (rnd("item" .. div, k * 10 + pos, ni) + 1) or nil
  local qty = rnd("qty" .. div, k * 10 + pos, 5) + 1
  local price = item and _M.item_price_cents(item) or 1000
  local net = qty * price
  return item, qty, price, net, floor(net * 0.21 + 0.5)
end

local INVOICE_STATUS = { [20] = "Open", [50] = "Verwerkt" }

gen.salesinvoices = function(ctx, s)
  local div = ctx.div
  local k, pos = _M.row_invoice(s)
  local a = account_ref(ctx, k * 3 + 2)
  local day = EPOCH + floor((k - 1) * (1000 * DAY) / math.max(1, ctx.size.salesinvoices))
  local status = (k % 5 == 0) and 20 or 50
  local row = {
    Division = div, InvoiceID = _M.guid("salesinvoices", div, k), InvoiceNumber = 24000000 + k,
    InvoiceDate = date(day), OrderDate = date(day - 2 * DAY), DueDate = date(day + 30 * DAY), Currency = "EUR",
    Journal = "70", JournalDescription = "Verkoopboek", Type = 8020, TypeDescription = "Verkoopfactuur",
    Status = status, StatusDescription = INVOICE_STATUS[status], PaymentCondition = "30",
    PaymentConditionDescription = "30 dagen", YourRef = (k % 3 == 0) and ("Bestelling " .. k) or nil,
    Remarks = (k % 7 == 0) and "Graag o.v.v. \"factuurnummer\" betalen" or nil, LineNumber = pos,
    StarterSalesInvoiceStatus = 0, DiscountType = 1, IncotermVersion = 0, IsExtraDuty = false,
    ExtraDutyAmountFC = 0, ExtraDutyPercentage = 0, WithholdingTaxAmountFC = 0, WithholdingTaxBaseAmount = 0,
    WithholdingTaxPercentage = 0, SalesOrderLineNumber = 0, SalesOrderNumber = 0, OrderNumber = 0,
    DocumentNumber = 0,
  }
  if a then
    local name = _M.account_name(a)
    for _, p in ipairs{ "InvoiceTo", "OrderedBy", "DeliverTo" } do
      row[p] = _M.guid("accounts", div, a)
      row[p .. "Name"] = name
    end
    if a <= ctx.size.contacts then
      row.InvoiceToContactPerson = _M.guid("contacts", div, a)
      row.OrderedByContactPerson = row.InvoiceToContactPerson
    end
  end
  if pos == 0 then
    local sum, vat = 0, 0
    for p = 1, _M.invoice_lines(k) do
      local _, _, _, net, v = line_facts(ctx, k, p)
      sum, vat = sum + net, vat + v
    end
    row.ID = row.InvoiceID
    row.Description = "Factuur " .. (24000000 + k)
    row.AmountFCExclVat = cents(sum)
    row.AmountFC, row.AmountDC = cents(sum + vat), cents(sum + vat)
    row.VATAmountFC, row.VATAmountDC = cents(vat), cents(vat)
    row.AmountDiscount, row.AmountDiscountExclVat, row.Discount = 0, 0, 0
  else
    local item, qty, price, net, vat = line_facts(ctx, k, pos)
    local l = _M.row_line(s)
    row.ID = _M.guid("salesinvoicelines", div, l)
    row.Quantity, row.UnitPrice, row.NetPrice, row.Discount = qty, cents(price), cents(price), 0
    row.AmountFC, row.AmountDC = cents(net), cents(net)
    row.VATAmountFC, row.VATAmountDC = cents(vat), cents(vat)
    row.VATCode, row.VATCodeDescription, row.VATPercentage = "2", "Btw hoog 21%", 0.21
    row.UnitCode, row.UnitDescription = "stuk", "Stuk"
    row.DeliveryDate = date(day)
    if item then
      row.Item = _M.guid("items", div, item)
      row.ItemCode = fmt("ART-%05d", item)
      row.ItemDescription = GOODS[(item - 1) % #GOODS + 1] .. (item > #GOODS and (" #" .. item) or "")
      row.Description = row.ItemDescription
    end
    set_gl(ctx, row, "GLAccount", gl_ref(ctx, "revenue"))
  end
  stamp(row, "si" .. div, k, day)
  return row
end

_M.generators = gen

--- the cheap Modified (ms) of base row i, in Timestamp order: read/sync/Sync/SyncTimestamp searches it
function _M.modified_ms(store, ctx, i)
  local row = gen[store](ctx, i)
  return tonumber(row.Modified:match("%-?%d+"))
end

return _M
