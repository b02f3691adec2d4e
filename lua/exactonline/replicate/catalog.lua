--- The standard entities a replica holds: each one's regular, sync and bulk path, its key, its
-- EntityType code in sync/Deleted, and its fields with their Edm types (guid datetime double int bool
-- string binary). Facts from Exact's REST reference pages (HlpRestAPIResourcesDetails.aspx?name=Sync…),
-- as the public client libraries list them; the fields are those of the endpoint replicate reads
-- (sync, else bulk). A field Exact sends that is not listed here still gets a column. Full reads ask for
-- these fields by name ($select), so a bulk-read entity lists only fields every region's Exact has (the US
-- TaxSchedule fields of SalesInvoiceLines are left out: elsewhere Exact refuses a $select naming them).
local ipairs, type = ipairs, type

local _M = {}

local function entity(path, sync, bulk, key, entity_type, fields)
  local list, by_name = {}, {}
  for name, t in fields:gmatch("([%w_]+):(%a+)") do
    local f = { name = name, column = name:lower(), type = t }
    list[#list + 1] = f
    by_name[name] = f
  end
  return { path = path, table = path:lower():gsub("/", "_"), sync = sync, bulk = bulk, key = key,
    entity_type = entity_type, fields = list, field = by_name }
end

_M.entities = {
  entity("crm/Accounts", "sync/CRM/Accounts", "bulk/CRM/Accounts", "ID", 2, [[
Timestamp:int Accountant:guid AccountManager:guid AccountManagerFullName:string AccountManagerHID:int
ActivitySector:guid ActivitySubSector:guid AddressLine1:string AddressLine2:string AddressLine3:string
AddressSource:int AutomaticProcessProposedEntry:int Blocked:bool BRIN:guid BSN:string BusinessType:guid
CanDropShip:bool ChamberOfCommerce:string City:string Classification:string Classification1:guid
Classification2:guid Classification3:guid Classification4:guid Classification5:guid Classification6:guid
Classification7:guid Classification8:guid ClassificationDescription:string Code:string CodeAtSupplier:string
CompanySize:guid ConsolidationScenario:int ControlledDate:datetime Costcenter:string
CostcenterDescription:string CostPaid:int Country:string CountryName:string Created:datetime Creator:guid
CreatorFullName:string CreditLinePurchase:double CreditLineSales:double Currency:string CustomerSince:datetime
CustomField:string DatevCreditorCode:string DatevDebtorCode:string DeliveryAdvice:int DiscountPurchase:double
DiscountSales:double Division:int Document:guid DunsNumber:string Email:string EnableSalesPaymentLink:bool
EndDate:datetime EORINumber:string EstablishedDate:datetime Fax:string GLAccountPurchase:guid
GLAccountSales:guid GLAP:guid GLAR:guid GlnNumber:string HasWithholdingTaxSales:bool ID:guid
IgnoreDatevWarningMessage:bool IncotermAddressPurchase:string IncotermAddressSales:string
IncotermCodePurchase:string IncotermCodeSales:string IncotermVersionPurchase:int IncotermVersionSales:int
IntraStatArea:string IntraStatDeliveryTerm:string IntraStatSystem:string IntraStatTransactionA:string
IntraStatTransactionB:string IntraStatTransportMethod:string InvoiceAccount:guid InvoiceAccountCode:string
InvoiceAccountName:string InvoiceAttachmentType:int InvoicingMethod:int IsAccountant:int IsAgency:int
IsAnonymised:int IsBank:bool IsCompetitor:int IsExtraDuty:bool IsMailing:int IsMember:bool IsPilot:bool
IsPurchase:bool IsReseller:bool IsSales:bool IsSupplier:bool Language:string LanguageDescription:string
Latitude:double LeadPurpose:guid LeadSource:guid Logo:binary LogoFileName:string LogoThumbnailUrl:string
LogoUrl:string Longitude:double MainContact:guid Modified:datetime Modifier:guid ModifierFullName:string
Name:string OINNumber:string Parent:guid PayAsYouEarn:string PaymentConditionPurchase:string
PaymentConditionPurchaseDescription:string PaymentConditionSales:string PaymentConditionSalesDescription:string
PeppolIdentifier:string PeppolIdentifierType:int Phone:string PhoneExtension:string Postcode:string
PriceList:guid PurchaseCurrency:string PurchaseCurrencyDescription:string PurchaseLeadDays:int
PurchaseVATCode:string PurchaseVATCodeDescription:string RecepientOfCommissions:bool Remarks:string
Reseller:guid ResellerCode:string ResellerName:string RSIN:string SalesCurrency:string
SalesCurrencyDescription:string SalesTaxSchedule:guid SalesTaxScheduleCode:string
SalesTaxScheduleDescription:string SalesVATCode:string SalesVATCodeDescription:string SearchCode:string
SecurityLevel:int SeparateInvPerProject:int SeparateInvPerSubscription:int ShippingLeadDays:int
ShippingMethod:guid ShowRemarkForSales:bool Source:int StartDate:datetime State:string StateName:string
Status:string StatusSince:datetime TradeName:string Type:string UniqueTaxpayerReference:string
VATLiability:string VATNumber:string Website:string]]),
  entity("crm/Contacts", "sync/CRM/Contacts", "bulk/CRM/Contacts", "ID", 5, [[
Timestamp:int Account:guid AccountIsCustomer:bool AccountIsSupplier:bool AccountMainContact:guid
AccountName:string AddressLine2:string AddressStreet:string AddressStreetNumber:string
AddressStreetNumberSuffix:string AllowMailing:int BirthDate:datetime BirthName:string BirthNamePrefix:string
BirthPlace:string BusinessEmail:string BusinessFax:string BusinessMobile:string BusinessPhone:string
BusinessPhoneExtension:string City:string Code:string Country:string Created:datetime Creator:guid
CreatorFullName:string CustomField:string Division:int Email:string EndDate:datetime FirstName:string
FullName:string Gender:string HID:int ID:guid IdentificationDate:datetime IdentificationDocument:guid
IdentificationUser:guid Initials:string IsAnonymised:int IsMailingExcluded:bool IsMainContact:bool
JobTitleDescription:string Language:string LastName:string LeadPurpose:guid LeadSource:guid
MarketingNotes:string MiddleName:string Mobile:string Modified:datetime Modifier:guid ModifierFullName:string
Nationality:string Notes:string PartnerName:string PartnerNamePrefix:string Person:guid Phone:string
PhoneExtension:string Picture:binary PictureName:string PictureThumbnailUrl:string PictureUrl:string
Postcode:string SocialSecurityNumber:string StartDate:datetime State:string Title:string
TitleAbbreviation:string TitleDescription:string]]),
  entity("crm/Addresses", "sync/CRM/Addresses", "bulk/CRM/Addresses", "ID", 3, [[
Timestamp:int Account:guid AccountIsSupplier:bool AccountName:string AddressLine1:string AddressLine2:string
AddressLine3:string City:string Contact:guid ContactName:string Country:string CountryName:string
Created:datetime Creator:guid CreatorFullName:string CustomField:string Division:int Fax:string
FreeBoolField_01:bool FreeBoolField_02:bool FreeBoolField_03:bool FreeBoolField_04:bool FreeBoolField_05:bool
FreeDateField_01:datetime FreeDateField_02:datetime FreeDateField_03:datetime FreeDateField_04:datetime
FreeDateField_05:datetime FreeNumberField_01:double FreeNumberField_02:double FreeNumberField_03:double
FreeNumberField_04:double FreeNumberField_05:double FreeTextField_01:string FreeTextField_02:string
FreeTextField_03:string FreeTextField_04:string FreeTextField_05:string ID:guid Mailbox:string Main:bool
Modified:datetime Modifier:guid ModifierFullName:string NicNumber:string Notes:string Phone:string
PhoneExtension:string Postcode:string Source:int State:string StateDescription:string Type:int Warehouse:guid
WarehouseCode:string WarehouseDescription:string]]),
  entity("financial/GLAccounts", "sync/Financial/GLAccounts", "bulk/Financial/GLAccounts", "ID", 7, [[
Timestamp:int AllowCostsInSales:int AssimilatedVATBox:int BalanceSide:string BalanceType:string BelcotaxType:int
Code:string Compress:bool Costcenter:string CostcenterDescription:string Costunit:string
CostunitDescription:string Created:datetime Creator:guid CreatorFullName:string CustomField:string
Description:string DescriptionTermID:int Division:int ExcludeVATListing:int
ExpenseNonDeductiblePercentage:double ID:guid IsBlocked:bool Matching:bool Modified:datetime Modifier:guid
ModifierFullName:string PrivateGLAccount:guid PrivatePercentage:double ReportingCode:string RevalueCurrency:bool
SearchCode:string Type:int TypeDescription:string UseCostcenter:int UseCostunit:int VATCode:string
VATDescription:string VATGLAccountType:string VATNonDeductibleGLAccount:guid VATNonDeductiblePercentage:double
VATSystem:string YearEndCostGLAccount:guid YearEndReflectionGLAccount:guid]]),
  entity("financial/GLClassifications", "sync/Financial/GLClassifications",
    "bulk/Financial/GLClassifications", "ID", 18, [[
Timestamp:int Abstract:bool Balance:string Code:string Created:datetime Creator:guid CreatorFullName:string
Description:string Division:int ID:guid IsTupleSubElement:bool Modified:datetime Modifier:guid
ModifierFullName:string Name:string Nillable:bool Parent:guid PeriodType:string SubstitutionGroup:string
TaxonomyNamespace:guid TaxonomyNamespaceDescription:string Type:guid]]),
  entity("financialtransaction/TransactionLines", "sync/Financial/TransactionLines",
    "bulk/Financial/TransactionLines", "ID", 1, [[
Timestamp:int Account:guid AccountCode:string AccountName:string AmountDC:double AmountFC:double
AmountVATBaseFC:double AmountVATFC:double Asset:guid AssetCode:string AssetDescription:string CostCenter:string
CostCenterDescription:string CostUnit:string CostUnitDescription:string Created:datetime Creator:guid
CreatorFullName:string Currency:string CustomField:string Date:datetime Description:string Division:int
Document:guid DocumentNumber:int DocumentSubject:string DueDate:datetime EntryID:guid EntryNumber:int
ExchangeRate:double ExternalLinkDescription:string ExternalLinkReference:string ExtraDutyAmountFC:double
ExtraDutyPercentage:double FinancialPeriod:int FinancialYear:int GLAccount:guid GLAccountCode:string
GLAccountDescription:string ID:guid InvoiceNumber:int Item:guid ItemCode:string ItemDescription:string
JournalCode:string JournalDescription:string LineNumber:int LineType:int Modified:datetime Modifier:guid
ModifierFullName:string Notes:string OffsetID:guid OrderNumber:int PaymentDiscountAmount:double
PaymentReference:string Project:guid ProjectCode:string ProjectDescription:string ProjectWBS:guid
ProjectWBSDescription:string Quantity:double SerialNumber:string Status:int Subscription:guid
SubscriptionDescription:string TrackingNumber:string TrackingNumberDescription:string Type:int VATCode:string
VATCodeDescription:string VATPercentage:double VATType:string YourRef:string]]),
  entity("salesinvoice/SalesInvoices", "sync/SalesInvoice/SalesInvoices",
    "bulk/SalesInvoice/SalesInvoices", "ID", 13, [[
Timestamp:int AmountDC:double AmountDiscount:double AmountDiscountExclVat:double AmountFC:double
AmountFCExclVat:double CostCenter:string CostCenterDescription:string CostUnit:string CostUnitDescription:string
Created:datetime Creator:guid CreatorFullName:string Currency:string CustomerItemCode:string CustomField:string
DeliverTo:guid DeliverToAddress:guid DeliverToContactPerson:guid DeliverToContactPersonFullName:string
DeliverToName:string DeliveryDate:datetime Description:string Discount:double DiscountType:int Division:int
Document:guid DocumentNumber:int DocumentSubject:string DueDate:datetime Employee:guid EmployeeFullName:string
EndTime:datetime ExtraDutyAmountFC:double ExtraDutyPercentage:double GAccountAmountFC:double GLAccount:guid
GLAccountDescription:string ID:guid IncotermAddress:string IncotermCode:string IncotermVersion:int
InvoiceDate:datetime InvoiceID:guid InvoiceNumber:int InvoiceTo:guid InvoiceToContactPerson:guid
InvoiceToContactPersonFullName:string InvoiceToName:string IsExtraDuty:bool Item:guid ItemCode:string
ItemDescription:string Journal:string JournalDescription:string LineNumber:int Modified:datetime Modifier:guid
ModifierFullName:string NetPrice:double Notes:string OrderDate:datetime OrderedBy:guid
OrderedByContactPerson:guid OrderedByContactPersonFullName:string OrderedByName:string OrderNumber:int
PaymentCondition:string PaymentConditionDescription:string PaymentReference:string Pricelist:guid
PricelistDescription:string Project:guid ProjectDescription:string ProjectWBS:guid ProjectWBSDescription:string
Quantity:double Remarks:string SalesChannel:guid SalesChannelCode:string SalesChannelDescription:string
SalesOrder:guid SalesOrderLine:guid SalesOrderLineNumber:int SalesOrderNumber:int Salesperson:guid
SalespersonFullName:string StarterSalesInvoiceStatus:int StarterSalesInvoiceStatusDescription:string
StartTime:datetime Status:int StatusDescription:string Subscription:guid SubscriptionDescription:string
TaxSchedule:guid TaxScheduleCode:string TaxScheduleDescription:string Type:int TypeDescription:string
UnitCode:string UnitDescription:string UnitPrice:double VATAmountDC:double VATAmountFC:double VATCode:string
VATCodeDescription:string VATPercentage:double Warehouse:guid WithholdingTaxAmountFC:double
WithholdingTaxBaseAmount:double WithholdingTaxPercentage:double YourRef:string]]),
  entity("salesinvoice/SalesInvoiceLines", nil, "bulk/SalesInvoice/SalesInvoiceLines", "ID", nil, [[
ID:guid AmountDC:double AmountFC:double CostCenter:string CostCenterDescription:string CostUnit:string
CostUnitDescription:string CustomerItemCode:string CustomField:string DeliveryDate:datetime Description:string
Discount:double Division:int Employee:guid EmployeeFullName:string EndTime:datetime ExtraDutyAmountFC:double
ExtraDutyPercentage:double GLAccount:guid GLAccountDescription:string InvoiceID:guid Item:guid ItemCode:string
ItemDescription:string LineNumber:int NetPrice:double Notes:string Pricelist:guid PricelistDescription:string
Project:guid ProjectDescription:string ProjectWBS:guid ProjectWBSDescription:string Quantity:double
SalesOrder:guid SalesOrderLine:guid SalesOrderLineNumber:int SalesOrderNumber:int StartTime:datetime
Subscription:guid SubscriptionDescription:string
UnitCode:string UnitDescription:string UnitPrice:double VATAmountDC:double
VATAmountFC:double VATCode:string VATCodeDescription:string VATPercentage:double]]),
  entity("logistics/Items", "sync/Logistics/Items", "bulk/Logistics/Items", "ID", 9, [[
Timestamp:int AssembledLeadDays:int AverageCost:double Barcode:string BatchQuantity:double Class_01:string
Class_02:string Class_03:string Class_04:string Class_05:string Class_06:string Class_07:string Class_08:string
Class_09:string Class_10:string Code:string CopyRemarks:int CostPriceCurrency:string CostPriceNew:double
CostPriceStandard:double Created:datetime Creator:guid CreatorFullName:string CustomField:string
Description:string Division:int EndDate:datetime ExtraDescription:string FreeBoolField_01:bool
FreeBoolField_02:bool FreeBoolField_03:bool FreeBoolField_04:bool FreeBoolField_05:bool
FreeDateField_01:datetime FreeDateField_02:datetime FreeDateField_03:datetime FreeDateField_04:datetime
FreeDateField_05:datetime FreeNumberField_01:double FreeNumberField_02:double FreeNumberField_03:double
FreeNumberField_04:double FreeNumberField_05:double FreeNumberField_06:double FreeNumberField_07:double
FreeNumberField_08:double FreeTextField_01:string FreeTextField_02:string FreeTextField_03:string
FreeTextField_04:string FreeTextField_05:string FreeTextField_06:string FreeTextField_07:string
FreeTextField_08:string FreeTextField_09:string FreeTextField_10:string GLCosts:guid GLCostsCode:string
GLCostsDescription:string GLCostsWorkInProgress:guid GLCostsWorkInProgressCode:string
GLCostsWorkInProgressDescription:string GLRevenue:guid GLRevenueCode:string GLRevenueDescription:string
GLRevenueWorkInProgress:guid GLRevenueWorkInProgressCode:string GLRevenueWorkInProgressDescription:string
GLStock:guid GLStockCode:string GLStockDescription:string GrossWeight:double ID:guid IsBatchItem:int
IsFractionAllowedItem:bool IsMakeItem:int IsNewContract:int IsOnDemandItem:int IsPackageItem:bool
IsPurchaseItem:bool IsRegistrationCodeItem:int IsSalesItem:bool IsSerialItem:bool IsStockItem:bool
IsSubcontractedItem:bool IsTaxableItem:int IsTime:int IsWebshopItem:int ItemGroup:guid ItemGroupCode:string
ItemGroupDescription:string Modified:datetime Modifier:guid ModifierFullName:string NetWeight:double
NetWeightUnit:string Notes:string Picture:binary PictureName:string PictureThumbnailUrl:string PictureUrl:string
SalesVatCode:string SalesVatCodeDescription:string SearchCode:string SecurityLevel:int StartDate:datetime
StatisticalCode:string StatisticalNetWeight:double StatisticalUnits:double StatisticalValue:double Stock:double
Unit:string UnitDescription:string UnitType:string UseExplosion:int]]),
  entity("project/Projects", "sync/Project/Projects", nil, "ID", 21, [[
Timestamp:int Account:guid AccountCode:string AccountContact:guid AccountName:string
AllowAdditionalInvoicing:bool AllowMemberEntryOnly:bool BlockEntry:bool BlockInvoicing:bool BlockPlanning:bool
BlockPurchasing:bool BlockRebilling:bool BudgetedAmount:double BudgetedCosts:double BudgetedRevenue:double
BudgetOverrunHours:int BudgetType:int BudgetTypeDescription:string Classification:guid
ClassificationDescription:string Code:string CostsAmountFC:double Created:datetime Creator:guid
CreatorFullName:string CustomerPOnumber:string CustomField:string Description:string Division:int
DivisionName:string EnableWorkInProgress:bool EndDate:datetime FixedPriceItem:guid
FixedPriceItemDescription:string HasWBSLines:bool ID:guid IncludeInvoiceSpecification:int
IncludeSpecificationInInvoicePdf:bool InternalNotes:string InvoiceAddress:guid InvoiceAsQuoted:bool
InvoiceDescription:string IsWBSRequiredForEntry:int Manager:guid ManagerFullname:string MarkupPercentage:double
Modified:datetime Modifier:guid ModifierFullName:string Notes:string PaymentCondition:string PrepaidItem:guid
PrepaidItemDescription:string PrepaidType:int PrepaidTypeDescription:string SalesTimeQuantity:double
SourceQuotation:guid StartDate:datetime TimeQuantityToAlert:double Type:int TypeDescription:string
UseBillingMilestones:bool]]),
  entity("cashflow/PaymentTerms", "sync/Cashflow/PaymentTerms", nil, "ID", 10, [[
Timestamp:int Account:guid AccountBankAccountID:guid AccountBankAccountNumber:string AccountCode:string
AccountContact:guid AccountContactName:string AccountCountry:string AccountName:string AmountDC:double
AmountDiscountDC:double AmountDiscountFC:double AmountFC:double ApprovalStatus:int BankAccountID:guid
BankAccountNumber:string CashflowTransactionBatchCode:string Created:datetime Creator:guid
CreatorFullName:string Currency:string Description:string DirectDebitMandate:guid
DirectDebitMandateDescription:string DirectDebitMandatePaymentType:int DirectDebitMandateReference:string
DirectDebitMandateType:int DiscountDueDate:datetime Division:int Document:guid DocumentNumber:int
DocumentSubject:string DueDate:datetime EndDate:datetime EndPeriod:int EndToEndID:string EndYear:int
EntryDate:datetime EntryID:guid EntryNumber:int GLAccount:guid GLAccountCode:string GLAccountDescription:string
ID:guid InvoiceDate:datetime InvoiceNumber:int IsBatchBooking:int IsFullyPaid:bool Journal:string
JournalDescription:string LastPaymentDate:datetime LineType:int Modified:datetime Modifier:guid
ModifierFullName:string OrderNumber:int PaymentBatchNumber:int PaymentCondition:string
PaymentConditionDescription:string PaymentDays:int PaymentDaysDiscount:int PaymentDiscountPercentage:double
PaymentInformationID:string PaymentMethod:string PaymentReference:string PaymentSelected:datetime
PaymentSelector:guid PaymentSelectorFullName:string RateFC:double ReceivableBatchNumber:int
ReceivableSelected:datetime ReceivableSelector:guid ReceivableSelectorFullName:string Source:int Status:int
TransactionAmountDC:double TransactionAmountFC:double TransactionDueDate:datetime TransactionEntryID:guid
TransactionID:guid TransactionIsReversal:bool TransactionReportingPeriod:int TransactionReportingYear:int
TransactionStatus:int TransactionType:int YourRef:string]]),
}

-- sync/Deleted: one per division, rows mapped to entities by EntityType
_M.deleted = entity("sync/Deleted", "sync/Deleted", nil, "ID", nil, [[
Timestamp:int DeletedBy:guid DeletedDate:datetime Division:int EntityKey:guid EntityType:int ID:guid]])

local by_path, by_type = {}, {}
for _, e in ipairs(_M.entities) do
  by_path[e.path:lower()] = e
  if e.entity_type then by_type[e.entity_type] = e end
end

-- The sync rows of sales invoices are lines keyed by ID; a deleted invoice (EntityType 13) names the
-- invoice, so every line with that InvoiceID goes too.
by_path["salesinvoice/salesinvoices"].delete_by = "InvoiceID"

--- The standard set: every entity above, in this order.
function _M.standard()
  local out = {}
  for i, e in ipairs(_M.entities) do out[i] = e end
  return out
end

--- lookup("crm/Accounts") (any case, as export takes it) --> entity | nil
function _M.lookup(path)
  if type(path) ~= "string" then return nil end
  return by_path[path:gsub("^/+", ""):lower()]
end

--- by_entity_type(2) --> the entity sync/Deleted rows of that EntityType delete from | nil
function _M.by_entity_type(code)
  return by_type[code]
end

return _M
