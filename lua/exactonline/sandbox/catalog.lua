--- What the sandbox imitates, as data: each entity's endpoints (regular, bulk, sync: only where Exact has
-- them), key, sync/Deleted EntityType, mandatory-filter fields, and field catalogs (name:Edm type), read as
-- facts from Exact's REST reference pages (HlpRestAPIResourcesDetails.aspx?name=CRMAccounts, SyncCRMAccounts,
-- …) as public client libraries list them. Navigation properties (collections) are listed apart.
local ipairs = ipairs

local _M = {}

-- name:EdmType, per reference page (regular pages also serve bulk/; Sync* pages serve sync/)
_M.fields = {
  Account = [[
ID:Guid Accountant:Guid AccountManager:Guid AccountManagerFullName:String AccountManagerHID:Int32
ActivitySector:Guid ActivitySubSector:Guid AddressLine1:String AddressLine2:String AddressLine3:String
AutomaticProcessProposedEntry:Int32 Blocked:Boolean BSN:String BusinessType:Guid CanDropShip:Boolean
ChamberOfCommerce:String City:String Classification1:Guid Classification2:Guid Classification3:Guid
Classification4:Guid Classification5:Guid Classification6:Guid Classification7:Guid Classification8:Guid
Code:String CodeAtSupplier:String CompanySize:Guid ConsolidationScenario:Int32 ControlledDate:DateTime
Country:String CountryName:String Created:DateTime Creator:Guid CreatorFullName:String
CreditLinePurchase:Double CreditLineSales:Double CustomField:String DatevCreditorCode:String
DatevDebtorCode:String DeliveryAdvice:Int32 DiscountPurchase:Double DiscountSales:Double Division:Int32
Email:String EnableSalesPaymentLink:Boolean EndDate:DateTime EORINumber:String EstablishedDate:DateTime
Fax:String GLAccountPurchase:Guid GLAccountSales:Guid GLAP:Guid GLAR:Guid GlnNumber:String
HasWithholdingTaxSales:Boolean IgnoreDatevWarningMessage:Boolean IncotermAddressPurchase:String
IncotermAddressSales:String IncotermCodePurchase:String IncotermCodeSales:String IncotermVersionPurchase:Int32
IncotermVersionSales:Int32 IntraStatArea:String IntraStatDeliveryTerm:String IntraStatSystem:String
IntraStatTransactionA:String IntraStatTransactionB:String IntraStatTransportMethod:String InvoiceAccount:Guid
InvoiceAccountCode:String InvoiceAccountName:String InvoiceAttachmentType:Int32 InvoicingMethod:Int32
IsAccountant:Int32 IsAgency:Int32 IsAnonymised:Int32 IsCompetitor:Int32 IsExtraDuty:Boolean IsMailing:Int32
IsPilot:Boolean IsReseller:Boolean IsSales:Boolean IsSupplier:Boolean Language:String
LanguageDescription:String Latitude:Double LeadPurpose:Guid LeadSource:Guid Logo:Binary LogoFileName:String
LogoThumbnailUrl:String LogoUrl:String Longitude:Double MainContact:Guid Modified:DateTime Modifier:Guid
ModifierFullName:String Name:String OINNumber:String Parent:Guid PayAsYouEarn:String
PaymentConditionPurchase:String PaymentConditionPurchaseDescription:String PaymentConditionSales:String
PaymentConditionSalesDescription:String PeppolIdentifier:String PeppolIdentifierType:Int32 Phone:String
PhoneExtension:String Postcode:String PriceList:Guid PurchaseCurrency:String PurchaseCurrencyDescription:String
PurchaseLeadDays:Int32 PurchaseVATCode:String PurchaseVATCodeDescription:String RecepientOfCommissions:Boolean
Remarks:String Reseller:Guid ResellerCode:String ResellerName:String RSIN:String SalesCurrency:String
SalesCurrencyDescription:String SalesVATCode:String SalesVATCodeDescription:String SearchCode:String
SecurityLevel:Int32 SeparateInvPerSubscription:Int32 ShippingLeadDays:Int32 ShippingMethod:Guid
ShowRemarkForSales:Boolean StartDate:DateTime State:String StateName:String Status:String TradeName:String
Type:String UniqueTaxpayerReference:String VATLiability:String VATNumber:String Website:String]],
  SyncAccount = [[
Timestamp:Int64 Accountant:Guid AccountManager:Guid AccountManagerFullName:String AccountManagerHID:Int32
ActivitySector:Guid ActivitySubSector:Guid AddressLine1:String AddressLine2:String AddressLine3:String
AutomaticProcessProposedEntry:Int32 Blocked:Boolean BSN:String BusinessType:Guid CanDropShip:Boolean
ChamberOfCommerce:String City:String Classification1:Guid Classification2:Guid Classification3:Guid
Classification4:Guid Classification5:Guid Classification6:Guid Classification7:Guid Classification8:Guid
Code:String CodeAtSupplier:String CompanySize:Guid ConsolidationScenario:Int32 ControlledDate:DateTime
Country:String CountryName:String Created:DateTime Creator:Guid CreatorFullName:String
CreditLinePurchase:Double CreditLineSales:Double CustomField:String DatevCreditorCode:String
DatevDebtorCode:String DeliveryAdvice:Int32 DiscountPurchase:Double DiscountSales:Double Division:Int32
Email:String EnableSalesPaymentLink:Boolean EndDate:DateTime EORINumber:String EstablishedDate:DateTime
Fax:String GLAccountPurchase:Guid GLAccountSales:Guid GLAP:Guid GLAR:Guid GlnNumber:String
HasWithholdingTaxSales:Boolean ID:Guid IgnoreDatevWarningMessage:Boolean IncotermAddressPurchase:String
IncotermAddressSales:String IncotermCodePurchase:String IncotermCodeSales:String IncotermVersionPurchase:Int32
IncotermVersionSales:Int32 IntraStatArea:String IntraStatDeliveryTerm:String IntraStatSystem:String
IntraStatTransactionA:String IntraStatTransactionB:String IntraStatTransportMethod:String InvoiceAccount:Guid
InvoiceAccountCode:String InvoiceAccountName:String InvoiceAttachmentType:Int32 InvoicingMethod:Int32
IsAccountant:Int32 IsAgency:Int32 IsAnonymised:Int32 IsCompetitor:Int32 IsExtraDuty:Boolean IsMailing:Int32
IsPilot:Boolean IsReseller:Boolean IsSales:Boolean IsSupplier:Boolean Language:String
LanguageDescription:String Latitude:Double LeadPurpose:Guid LeadSource:Guid Logo:Binary LogoFileName:String
LogoThumbnailUrl:String LogoUrl:String Longitude:Double MainContact:Guid Modified:DateTime Modifier:Guid
ModifierFullName:String Name:String OINNumber:String Parent:Guid PayAsYouEarn:String
PaymentConditionPurchase:String PaymentConditionPurchaseDescription:String PaymentConditionSales:String
PaymentConditionSalesDescription:String PeppolIdentifier:String PeppolIdentifierType:Int32 Phone:String
PhoneExtension:String Postcode:String PriceList:Guid PurchaseCurrency:String PurchaseCurrencyDescription:String
PurchaseLeadDays:Int32 PurchaseVATCode:String PurchaseVATCodeDescription:String RecepientOfCommissions:Boolean
Remarks:String Reseller:Guid ResellerCode:String ResellerName:String RSIN:String SalesCurrency:String
SalesCurrencyDescription:String SalesVATCode:String SalesVATCodeDescription:String SearchCode:String
SecurityLevel:Int32 SeparateInvPerSubscription:Int32 ShippingLeadDays:Int32 ShippingMethod:Guid
ShowRemarkForSales:Boolean StartDate:DateTime State:String StateName:String Status:String TradeName:String
Type:String UniqueTaxpayerReference:String VATLiability:String VATNumber:String Website:String]],
  Contact = [[
ID:Guid Account:Guid AccountIsCustomer:Boolean AccountIsSupplier:Boolean AccountMainContact:Guid
AccountName:String AddressLine2:String AddressStreet:String AddressStreetNumber:String
AddressStreetNumberSuffix:String BirthDate:DateTime BirthPlace:String BusinessEmail:String BusinessFax:String
BusinessMobile:String BusinessPhone:String BusinessPhoneExtension:String City:String Code:String Country:String
Created:DateTime Creator:Guid CreatorFullName:String CustomField:String Division:Int32 Email:String
EndDate:DateTime FirstName:String FullName:String Gender:String HID:Int32 IdentificationDate:DateTime
IdentificationDocument:Guid IdentificationUser:Guid Initials:String IsAnonymised:Int32
IsMailingExcluded:Boolean IsMainContact:Boolean JobTitleDescription:String Language:String LastName:String
LeadPurpose:Guid LeadSource:Guid MarketingNotes:String MiddleName:String Mobile:String Modified:DateTime
Modifier:Guid ModifierFullName:String Nationality:String Notes:String PartnerName:String
PartnerNamePrefix:String Person:Guid Phone:String PhoneExtension:String Picture:Binary PictureName:String
PictureThumbnailUrl:String PictureUrl:String Postcode:String SocialSecurityNumber:String StartDate:DateTime
State:String Title:String TitleAbbreviation:String TitleDescription:String]],
  SyncContact = [[
Timestamp:Int64 Account:Guid AccountIsCustomer:Boolean AccountIsSupplier:Boolean AccountMainContact:Guid
AccountName:String AddressLine2:String AddressStreet:String AddressStreetNumber:String
AddressStreetNumberSuffix:String BirthDate:DateTime BirthPlace:String BusinessEmail:String BusinessFax:String
BusinessMobile:String BusinessPhone:String BusinessPhoneExtension:String City:String Code:String Country:String
Created:DateTime Creator:Guid CreatorFullName:String CustomField:String Division:Int32 Email:String
EndDate:DateTime FirstName:String FullName:String Gender:String HID:Int32 ID:Guid IdentificationDate:DateTime
IdentificationDocument:Guid IdentificationUser:Guid Initials:String IsAnonymised:Int32
IsMailingExcluded:Boolean IsMainContact:Boolean JobTitleDescription:String Language:String LastName:String
LeadPurpose:Guid LeadSource:Guid MarketingNotes:String MiddleName:String Mobile:String Modified:DateTime
Modifier:Guid ModifierFullName:String Nationality:String Notes:String PartnerName:String
PartnerNamePrefix:String Person:Guid Phone:String PhoneExtension:String Picture:Binary PictureName:String
PictureThumbnailUrl:String PictureUrl:String Postcode:String SocialSecurityNumber:String StartDate:DateTime
State:String Title:String TitleAbbreviation:String TitleDescription:String]],
  Address = [[
ID:Guid Account:Guid AccountIsSupplier:Boolean AccountName:String AddressLine1:String AddressLine2:String
AddressLine3:String City:String Contact:Guid ContactName:String Country:String CountryName:String
Created:DateTime Creator:Guid CreatorFullName:String CustomField:String Division:Int32 Fax:String
FreeBoolField_01:Boolean FreeBoolField_02:Boolean FreeBoolField_03:Boolean FreeBoolField_04:Boolean
FreeBoolField_05:Boolean FreeDateField_01:DateTime FreeDateField_02:DateTime FreeDateField_03:DateTime
FreeDateField_04:DateTime FreeDateField_05:DateTime FreeNumberField_01:Double FreeNumberField_02:Double
FreeNumberField_03:Double FreeNumberField_04:Double FreeNumberField_05:Double FreeTextField_01:String
FreeTextField_02:String FreeTextField_03:String FreeTextField_04:String FreeTextField_05:String Mailbox:String
Main:Boolean Modified:DateTime Modifier:Guid ModifierFullName:String NicNumber:String Notes:String Phone:String
PhoneExtension:String Postcode:String State:String StateDescription:String Type:Int32 Warehouse:Guid
WarehouseCode:String WarehouseDescription:String]],
  SyncAddress = [[
Timestamp:Int64 Account:Guid AccountIsSupplier:Boolean AccountName:String AddressLine1:String
AddressLine2:String AddressLine3:String City:String Contact:Guid ContactName:String Country:String
CountryName:String Created:DateTime Creator:Guid CreatorFullName:String CustomField:String Division:Int32
Fax:String FreeBoolField_01:Boolean FreeBoolField_02:Boolean FreeBoolField_03:Boolean FreeBoolField_04:Boolean
FreeBoolField_05:Boolean FreeDateField_01:DateTime FreeDateField_02:DateTime FreeDateField_03:DateTime
FreeDateField_04:DateTime FreeDateField_05:DateTime FreeNumberField_01:Double FreeNumberField_02:Double
FreeNumberField_03:Double FreeNumberField_04:Double FreeNumberField_05:Double FreeTextField_01:String
FreeTextField_02:String FreeTextField_03:String FreeTextField_04:String FreeTextField_05:String ID:Guid
Mailbox:String Main:Boolean Modified:DateTime Modifier:Guid ModifierFullName:String NicNumber:String
Notes:String Phone:String PhoneExtension:String Postcode:String State:String StateDescription:String Type:Int32
Warehouse:Guid WarehouseCode:String WarehouseDescription:String]],
  GLAccount = [[
ID:Guid AllowCostsInSales:Int32 AssimilatedVATBox:Int32 BalanceSide:String BalanceType:String
BelcotaxType:Int32 Code:String Compress:Boolean Costcenter:String CostcenterDescription:String Costunit:String
CostunitDescription:String Created:DateTime Creator:Guid CreatorFullName:String CustomField:String
Description:String Division:Int32 ExcludeVATListing:Int32 ExpenseNonDeductiblePercentage:Double
IsBlocked:Boolean Matching:Boolean Modified:DateTime Modifier:Guid ModifierFullName:String
PrivateGLAccount:Guid PrivatePercentage:Double ReportingCode:String RevalueCurrency:Boolean SearchCode:String
Type:Int32 TypeDescription:String UseCostcenter:Int32 UseCostunit:Int32 VATCode:String VATDescription:String
VATGLAccountType:String VATNonDeductibleGLAccount:Guid VATNonDeductiblePercentage:Double VATSystem:String
YearEndCostGLAccount:Guid YearEndReflectionGLAccount:Guid]],
  SyncGLAccount = [[
Timestamp:Int64 AllowCostsInSales:Int32 AssimilatedVATBox:Int32 BalanceSide:String BalanceType:String
BelcotaxType:Int32 Code:String Compress:Boolean Costcenter:String CostcenterDescription:String Costunit:String
CostunitDescription:String Created:DateTime Creator:Guid CreatorFullName:String CustomField:String
Description:String Division:Int32 ExcludeVATListing:Int32 ExpenseNonDeductiblePercentage:Double ID:Guid
IsBlocked:Boolean Matching:Boolean Modified:DateTime Modifier:Guid ModifierFullName:String
PrivateGLAccount:Guid PrivatePercentage:Double ReportingCode:String RevalueCurrency:Boolean SearchCode:String
Type:Int32 TypeDescription:String UseCostcenter:Int32 UseCostunit:Int32 VATCode:String VATDescription:String
VATGLAccountType:String VATNonDeductibleGLAccount:Guid VATNonDeductiblePercentage:Double VATSystem:String
YearEndCostGLAccount:Guid YearEndReflectionGLAccount:Guid]],
  GLClassification = [[
ID:Guid Abstract:Boolean Balance:String Code:String Created:DateTime Creator:Guid CreatorFullName:String
Description:String Division:Int32 Modified:DateTime Modifier:Guid ModifierFullName:String Name:String
Nillable:Boolean Parent:Guid PeriodType:String SubstitutionGroup:String TaxonomyNamespace:Guid
TaxonomyNamespaceDescription:String Type:Guid]],
  SyncGLClassification = [[
Timestamp:Int64 Abstract:Boolean Balance:String Code:String Created:DateTime Creator:Guid
CreatorFullName:String Description:String Division:Int32 ID:Guid Modified:DateTime Modifier:Guid
ModifierFullName:String Name:String Nillable:Boolean Parent:Guid PeriodType:String SubstitutionGroup:String
TaxonomyNamespace:Guid TaxonomyNamespaceDescription:String Type:Guid]],
  TransactionLine = [[
ID:Guid Account:Guid AccountCode:String AccountName:String AmountDC:Double AmountFC:Double
AmountVATBaseFC:Double AmountVATFC:Double Asset:Guid AssetCode:String AssetDescription:String CostCenter:String
CostCenterDescription:String CostUnit:String CostUnitDescription:String Created:DateTime Creator:Guid
CreatorFullName:String Currency:String CustomField:String Date:DateTime Description:String Division:Int32
Document:Guid DocumentNumber:Int32 DocumentSubject:String DueDate:DateTime EntryID:Guid EntryNumber:Int32
ExchangeRate:Double ExternalLinkDescription:String ExternalLinkReference:String ExtraDutyAmountFC:Double
ExtraDutyPercentage:Double FinancialPeriod:Int32 FinancialYear:Int32 GLAccount:Guid GLAccountCode:String
GLAccountDescription:String InvoiceNumber:Int32 Item:Guid ItemCode:String ItemDescription:String
JournalCode:String JournalDescription:String LineNumber:Int32 LineType:Int32 Modified:DateTime Modifier:Guid
ModifierFullName:String Notes:String OffsetID:Guid OrderNumber:Int32 PaymentDiscountAmount:Double
PaymentReference:String Project:Guid ProjectCode:String ProjectDescription:String Quantity:Double
ShopOrder:String Status:Int32 Subscription:Guid SubscriptionDescription:String TrackingNumber:String
TrackingNumberDescription:String Type:Int32 VATCode:String VATCodeDescription:String VATPercentage:Double
VATType:String YourRef:String]],
  SyncTransactionLine = [[
Timestamp:Int64 Account:Guid AccountCode:String AccountName:String AmountDC:Double AmountFC:Double
AmountVATBaseFC:Double AmountVATFC:Double Asset:Guid AssetCode:String AssetDescription:String CostCenter:String
CostCenterDescription:String CostUnit:String CostUnitDescription:String Created:DateTime Creator:Guid
CreatorFullName:String Currency:String CustomField:String Date:DateTime Description:String Division:Int32
Document:Guid DocumentNumber:Int32 DocumentSubject:String DueDate:DateTime EntryID:Guid EntryNumber:Int32
ExchangeRate:Double ExternalLinkDescription:String ExternalLinkReference:String ExtraDutyAmountFC:Double
ExtraDutyPercentage:Double FinancialPeriod:Int32 FinancialYear:Int32 GLAccount:Guid GLAccountCode:String
GLAccountDescription:String ID:Guid InvoiceNumber:Int32 Item:Guid ItemCode:String ItemDescription:String
JournalCode:String JournalDescription:String LineNumber:Int32 LineType:Int32 Modified:DateTime Modifier:Guid
ModifierFullName:String Notes:String OffsetID:Guid OrderNumber:Int32 PaymentDiscountAmount:Double
PaymentReference:String Project:Guid ProjectCode:String ProjectDescription:String Quantity:Double Status:Int32
Subscription:Guid SubscriptionDescription:String TrackingNumber:String TrackingNumberDescription:String
Type:Int32 VATCode:String VATCodeDescription:String VATPercentage:Double VATType:String YourRef:String]],
  SalesInvoice = [[
InvoiceID:Guid AmountDC:Double AmountDiscount:Double AmountDiscountExclVat:Double AmountFC:Double
AmountFCExclVat:Double Created:DateTime Creator:Guid CreatorFullName:String Currency:String DeliverTo:Guid
DeliverToAddress:Guid DeliverToContactPerson:Guid DeliverToContactPersonFullName:String DeliverToName:String
Description:String Discount:Double DiscountType:Int32 Division:Int32 Document:Guid DocumentNumber:Int32
DocumentSubject:String DueDate:DateTime ExtraDutyAmountFC:Double GAccountAmountFC:Double IncotermAddress:String
IncotermCode:String IncotermVersion:Int32 InvoiceDate:DateTime InvoiceNumber:Int32 InvoiceTo:Guid
InvoiceToContactPerson:Guid InvoiceToContactPersonFullName:String InvoiceToName:String IsExtraDuty:Boolean
Journal:String JournalDescription:String Modified:DateTime Modifier:Guid ModifierFullName:String
OrderDate:DateTime OrderedBy:Guid OrderedByContactPerson:Guid OrderedByContactPersonFullName:String
OrderedByName:String OrderNumber:Int32 PaymentCondition:String PaymentConditionDescription:String
PaymentReference:String Remarks:String SalesChannel:Guid SalesChannelCode:String SalesChannelDescription:String
Salesperson:Guid SalespersonFullName:String SelectionCode:String SelectionCodeCode:String
SelectionCodeDescription:String ShippingMethod:Guid ShippingMethodCode:String ShippingMethodDescription:String
StarterSalesInvoiceStatus:Int32 StarterSalesInvoiceStatusDescription:String Status:Int32
StatusDescription:String Type:Int32 TypeDescription:String VATAmountDC:Double VATAmountFC:Double Warehouse:Guid
WithholdingTaxAmountFC:Double WithholdingTaxBaseAmount:Double WithholdingTaxPercentage:Double YourRef:String]],
  SyncSalesInvoice = [[
Timestamp:Int64 AmountDC:Double AmountDiscount:Double AmountDiscountExclVat:Double AmountFC:Double
AmountFCExclVat:Double CostCenter:String CostCenterDescription:String CostUnit:String
CostUnitDescription:String Created:DateTime Creator:Guid CreatorFullName:String Currency:String
CustomerItemCode:String CustomField:String DeliverTo:Guid DeliverToAddress:Guid DeliverToContactPerson:Guid
DeliverToContactPersonFullName:String DeliverToName:String DeliveryDate:DateTime Description:String
Discount:Double DiscountType:Int32 Division:Int32 Document:Guid DocumentNumber:Int32 DocumentSubject:String
DueDate:DateTime Employee:Guid EmployeeFullName:String EndTime:DateTime ExtraDutyAmountFC:Double
ExtraDutyPercentage:Double GAccountAmountFC:Double GLAccount:Guid GLAccountDescription:String ID:Guid
IncotermAddress:String IncotermCode:String IncotermVersion:Int32 InvoiceDate:DateTime InvoiceID:Guid
InvoiceNumber:Int32 InvoiceTo:Guid InvoiceToContactPerson:Guid InvoiceToContactPersonFullName:String
InvoiceToName:String IsExtraDuty:Boolean Item:Guid ItemCode:String ItemDescription:String Journal:String
JournalDescription:String LineNumber:Int32 Modified:DateTime Modifier:Guid ModifierFullName:String
NetPrice:Double Notes:String OrderDate:DateTime OrderedBy:Guid OrderedByContactPerson:Guid
OrderedByContactPersonFullName:String OrderedByName:String OrderNumber:Int32 PaymentCondition:String
PaymentConditionDescription:String PaymentReference:String Pricelist:Guid PricelistDescription:String
Project:Guid ProjectDescription:String ProjectWBS:Guid ProjectWBSDescription:String Quantity:Double
Remarks:String SalesChannel:Guid SalesChannelCode:String SalesChannelDescription:String SalesOrder:Guid
SalesOrderLine:Guid SalesOrderLineNumber:Int32 SalesOrderNumber:Int32 Salesperson:Guid
SalespersonFullName:String StarterSalesInvoiceStatus:Int32 StarterSalesInvoiceStatusDescription:String
StartTime:DateTime Status:Int32 StatusDescription:String Subscription:Guid SubscriptionDescription:String
Type:Int32 TypeDescription:String UnitCode:String UnitDescription:String UnitPrice:Double VATAmountDC:Double
VATAmountFC:Double VATCode:String VATCodeDescription:String VATPercentage:Double Warehouse:Guid
WithholdingTaxAmountFC:Double WithholdingTaxBaseAmount:Double WithholdingTaxPercentage:Double YourRef:String]],
  SalesInvoiceLine = [[
ID:Guid AmountDC:Double AmountFC:Double CostCenter:String CostCenterDescription:String CostUnit:String
CostUnitDescription:String CustomerItemCode:String CustomField:String DeliveryDate:DateTime Description:String
Discount:Double Division:Int32 Employee:Guid EmployeeFullName:String EndTime:DateTime ExtraDutyAmountFC:Double
ExtraDutyPercentage:Double GLAccount:Guid GLAccountDescription:String InvoiceID:Guid Item:Guid ItemCode:String
ItemDescription:String LineNumber:Int32 NetPrice:Double Notes:String Pricelist:Guid PricelistDescription:String
Project:Guid ProjectDescription:String ProjectWBS:Guid ProjectWBSDescription:String Quantity:Double
SalesOrder:Guid SalesOrderLine:Guid SalesOrderLineNumber:Int32 SalesOrderNumber:Int32 StartTime:DateTime
Subscription:Guid SubscriptionDescription:String UnitCode:String UnitDescription:String UnitPrice:Double
VATAmountDC:Double VATAmountFC:Double VATCode:String VATCodeDescription:String VATPercentage:Double]],
  Item = [[
ID:Guid AverageCost:Double Barcode:String Class_01:String Class_02:String Class_03:String Class_04:String
Class_05:String Class_06:String Class_07:String Class_08:String Class_09:String Class_10:String Code:String
CopyRemarks:Int32 CostPriceCurrency:String CostPriceNew:Double CostPriceStandard:Double Created:DateTime
Creator:Guid CreatorFullName:String CustomField:String Description:String Division:Int32 EndDate:DateTime
ExtraDescription:String FreeBoolField_01:Boolean FreeBoolField_02:Boolean FreeBoolField_03:Boolean
FreeBoolField_04:Boolean FreeBoolField_05:Boolean FreeDateField_01:DateTime FreeDateField_02:DateTime
FreeDateField_03:DateTime FreeDateField_04:DateTime FreeDateField_05:DateTime FreeNumberField_01:Double
FreeNumberField_02:Double FreeNumberField_03:Double FreeNumberField_04:Double FreeNumberField_05:Double
FreeNumberField_06:Double FreeNumberField_07:Double FreeNumberField_08:Double FreeTextField_01:String
FreeTextField_02:String FreeTextField_03:String FreeTextField_04:String FreeTextField_05:String
FreeTextField_06:String FreeTextField_07:String FreeTextField_08:String FreeTextField_09:String
FreeTextField_10:String GLCosts:Guid GLCostsCode:String GLCostsDescription:String GLRevenue:Guid
GLRevenueCode:String GLRevenueDescription:String GLStock:Guid GLStockCode:String GLStockDescription:String
GrossWeight:Double IsBatchItem:Int32 IsFractionAllowedItem:Boolean IsMakeItem:Int32 IsNewContract:Int32
IsOnDemandItem:Int32 IsPackageItem:Boolean IsPurchaseItem:Boolean IsSalesItem:Boolean IsSerialItem:Boolean
IsStockItem:Boolean IsSubcontractedItem:Boolean IsTaxableItem:Int32 IsTime:Int32 IsWebshopItem:Int32
ItemGroup:Guid ItemGroupCode:String ItemGroupDescription:String Modified:DateTime Modifier:Guid
ModifierFullName:String NetWeight:Double NetWeightUnit:String Notes:String Picture:Binary PictureName:String
PictureThumbnailUrl:String PictureUrl:String SalesVatCode:String SalesVatCodeDescription:String
SearchCode:String SecurityLevel:Int32 StandardSalesPrice:Double StartDate:DateTime StatisticalCode:String
StatisticalNetWeight:Double StatisticalUnits:Double StatisticalValue:Double Stock:Double Unit:String
UnitDescription:String UnitType:String]],
  SyncItem = [[
Timestamp:Int64 AverageCost:Double Barcode:String Class_01:String Class_02:String Class_03:String
Class_04:String Class_05:String Class_06:String Class_07:String Class_08:String Class_09:String Class_10:String
Code:String CopyRemarks:Int32 CostPriceCurrency:String CostPriceNew:Double CostPriceStandard:Double
Created:DateTime Creator:Guid CreatorFullName:String CustomField:String Description:String Division:Int32
EndDate:DateTime ExtraDescription:String FreeBoolField_01:Boolean FreeBoolField_02:Boolean
FreeBoolField_03:Boolean FreeBoolField_04:Boolean FreeBoolField_05:Boolean FreeDateField_01:DateTime
FreeDateField_02:DateTime FreeDateField_03:DateTime FreeDateField_04:DateTime FreeDateField_05:DateTime
FreeNumberField_01:Double FreeNumberField_02:Double FreeNumberField_03:Double FreeNumberField_04:Double
FreeNumberField_05:Double FreeNumberField_06:Double FreeNumberField_07:Double FreeNumberField_08:Double
FreeTextField_01:String FreeTextField_02:String FreeTextField_03:String FreeTextField_04:String
FreeTextField_05:String FreeTextField_06:String FreeTextField_07:String FreeTextField_08:String
FreeTextField_09:String FreeTextField_10:String GLCosts:Guid GLCostsCode:String GLCostsDescription:String
GLRevenue:Guid GLRevenueCode:String GLRevenueDescription:String GLStock:Guid GLStockCode:String
GLStockDescription:String GrossWeight:Double ID:Guid IsBatchItem:Int32 IsFractionAllowedItem:Boolean
IsMakeItem:Int32 IsNewContract:Int32 IsOnDemandItem:Int32 IsPackageItem:Boolean IsPurchaseItem:Boolean
IsSalesItem:Boolean IsSerialItem:Boolean IsStockItem:Boolean IsSubcontractedItem:Boolean IsTaxableItem:Int32
IsTime:Int32 IsWebshopItem:Int32 ItemGroup:Guid ItemGroupCode:String ItemGroupDescription:String
Modified:DateTime Modifier:Guid ModifierFullName:String NetWeight:Double NetWeightUnit:String Notes:String
Picture:Binary PictureName:String PictureThumbnailUrl:String PictureUrl:String SalesVatCode:String
SalesVatCodeDescription:String SearchCode:String SecurityLevel:Int32 StartDate:DateTime StatisticalCode:String
StatisticalNetWeight:Double StatisticalUnits:Double StatisticalValue:Double Stock:Double Unit:String
UnitDescription:String UnitType:String]],
  Project = [[
ID:Guid Account:Guid AccountCode:String AccountContact:Guid AccountName:String AllowAdditionalInvoicing:Boolean
AllowMemberEntryOnly:Boolean BlockEntry:Boolean BlockInvoicing:Boolean BlockPlanning:Boolean
BlockPurchasing:Boolean BlockRebilling:Boolean BudgetedAmount:Double BudgetedCosts:Double
BudgetedRevenue:Double BudgetOverrunHours:Int32 BudgetType:Int32 BudgetTypeDescription:String
Classification:Guid ClassificationDescription:String Code:String CostsAmountFC:Double Created:DateTime
Creator:Guid CreatorFullName:String CustomerPOnumber:String CustomField:String Description:String
Division:Int32 DivisionName:String EndDate:DateTime FixedPriceItem:Guid FixedPriceItemDescription:String
HasWBSLines:Boolean IncludeInvoiceSpecification:Int32 IncludeSpecificationInInvoicePdf:Boolean
InternalNotes:String InvoiceAddress:Guid InvoiceAsQuoted:Boolean InvoiceDescription:String
IsWBSRequiredForEntry:Int32 Manager:Guid ManagerFullname:String MarkupPercentage:Double Modified:DateTime
Modifier:Guid ModifierFullName:String Notes:String PaymentCondition:String PrepaidItem:Guid
PrepaidItemDescription:String PrepaidType:Int32 PrepaidTypeDescription:String SalesTimeQuantity:Double
SourceQuotation:Guid StartDate:DateTime TimeQuantityToAlert:Double Type:Int32 TypeDescription:String
UseBillingMilestones:Boolean]],
  SyncProject = [[
Timestamp:Int64 Account:Guid AccountCode:String AccountContact:Guid AccountName:String
AllowAdditionalInvoicing:Boolean AllowMemberEntryOnly:Boolean BlockEntry:Boolean BlockInvoicing:Boolean
BlockPlanning:Boolean BlockPurchasing:Boolean BlockRebilling:Boolean BudgetedAmount:Double BudgetedCosts:Double
BudgetedRevenue:Double BudgetOverrunHours:Int32 BudgetType:Int32 BudgetTypeDescription:String
Classification:Guid ClassificationDescription:String Code:String CostsAmountFC:Double Created:DateTime
Creator:Guid CreatorFullName:String CustomerPOnumber:String CustomField:String Description:String
Division:Int32 DivisionName:String EnableWorkInProgress:Boolean EndDate:DateTime FixedPriceItem:Guid
FixedPriceItemDescription:String HasWBSLines:Boolean ID:Guid IncludeInvoiceSpecification:Int32
IncludeSpecificationInInvoicePdf:Boolean InternalNotes:String InvoiceAddress:Guid InvoiceAsQuoted:Boolean
InvoiceDescription:String IsWBSRequiredForEntry:Int32 Manager:Guid ManagerFullname:String
MarkupPercentage:Double Modified:DateTime Modifier:Guid ModifierFullName:String Notes:String
PaymentCondition:String PrepaidItem:Guid PrepaidItemDescription:String PrepaidType:Int32
PrepaidTypeDescription:String SalesTimeQuantity:Double SourceQuotation:Guid StartDate:DateTime
TimeQuantityToAlert:Double Type:Int32 TypeDescription:String UseBillingMilestones:Boolean]],
  SyncPaymentTerm = [[
Timestamp:Int64 Account:Guid AccountBankAccountID:Guid AccountBankAccountNumber:String AccountCode:String
AccountContact:Guid AccountContactName:String AccountCountry:String AccountName:String AmountDC:Double
AmountDiscountDC:Double AmountDiscountFC:Double AmountFC:Double ApprovalStatus:Int32 BankAccountID:Guid
BankAccountNumber:String CashflowTransactionBatchCode:String Created:DateTime Creator:Guid
CreatorFullName:String Currency:String Description:String DirectDebitMandate:Guid
DirectDebitMandateDescription:String DirectDebitMandatePaymentType:Int32 DirectDebitMandateReference:String
DirectDebitMandateType:Int32 DiscountDueDate:DateTime Division:Int32 Document:Guid DocumentNumber:Int32
DocumentSubject:String DueDate:DateTime EndDate:DateTime EndPeriod:Int32 EndToEndID:String EndYear:Int32
EntryDate:DateTime EntryID:Guid EntryNumber:Int32 GLAccount:Guid GLAccountCode:String
GLAccountDescription:String ID:Guid InvoiceDate:DateTime InvoiceNumber:Int32 IsBatchBooking:Int32
IsFullyPaid:Boolean Journal:String JournalDescription:String LastPaymentDate:DateTime LineType:Int32
Modified:DateTime Modifier:Guid ModifierFullName:String OrderNumber:Int32 PaymentBatchNumber:Int32
PaymentCondition:String PaymentConditionDescription:String PaymentDays:Int32 PaymentDaysDiscount:Int32
PaymentDiscountPercentage:Double PaymentInformationID:String PaymentMethod:String PaymentReference:String
PaymentSelected:DateTime PaymentSelector:Guid PaymentSelectorFullName:String RateFC:Double
ReceivableBatchNumber:Int32 ReceivableSelected:DateTime ReceivableSelector:Guid
ReceivableSelectorFullName:String Source:Int32 Status:Int32 TransactionAmountDC:Double
TransactionAmountFC:Double TransactionDueDate:DateTime TransactionEntryID:Guid TransactionID:Guid
TransactionIsReversal:Boolean TransactionReportingPeriod:Int32 TransactionReportingYear:Int32
TransactionStatus:Int32 TransactionType:Int32 YourRef:String]],
  SyncDeleted = [[
Timestamp:Int64 DeletedBy:Guid DeletedDate:DateTime Division:Int32 EntityKey:Guid EntityType:Int32 ID:Guid]],
  SystemDivision = [[
Code:Int32 AddressLine1:String AddressLine2:String AddressLine3:String ArchiveDate:DateTime
BlockingStatus:Int32 BusinessTypeCode:String BusinessTypeDescription:String
ChamberOfCommerceEstablishment:String ChamberOfCommerceNumber:String City:String CompanySizeCode:String
CompanySizeDescription:String Country:String Created:DateTime Creator:Guid CreatorFullName:String
Currency:String Current:Boolean Customer:Guid CustomerCode:String CustomerName:String
DatevAccountantNumber:String DatevClientNumber:String Description:String DivisionHRLinkUnlinkDate:DateTime
DivisionMoveDate:DateTime Email:String Fax:String Hid:Int32 IsDossierDivision:Boolean IsHRDivision:Boolean
IsMainDivision:Boolean IsPracticeDivision:Boolean Legislation:String Modified:DateTime Modifier:Guid
ModifierFullName:String OBNumber:String Phone:String Postcode:String SbiCode:String SbiDescription:String
SectorCode:String SectorDescription:String ShareCapital:Double SiretNumber:String StartDate:DateTime
State:String Status:Int32 SubsectorCode:String SubsectorDescription:String TaxOfficeNumber:String
TaxReferenceNumber:String TemplateCode:String VATNumber:String Website:String]],
  WebhookSubscription = [[
ID:Guid CallbackURL:String ClientID:String Created:DateTime Creator:Guid CreatorFullName:String
Description:String Division:Int32 IsInstant:Boolean Topic:String UserID:String]],
}

-- the mandatory filter fields Exact names in its refusal (Accounts and Items as quoted by users of
-- picqer/exact-php-client, issue 591); for the others, the sandbox's choice: keys, codes, references and dates
local ACCOUNT_FILTERS = "Accountant,AccountManager,AddressLine1,AddressLine2,AddressLine3,Blocked,BRIN,BSN," ..
  "ChamberOfCommerce,City,Classification1,Classification2,Classification3,Classification4,Classification5," ..
  "Classification6,Classification7,Classification8,Classification,Code,CodeAtSupplier,Country,Created,Email," ..
  "EndDate,Fax,ID,InvoiceAccount,IsAccountant,IsReseller,IsSales,IsSupplier,MainContact,Modified,Name,Parent," ..
  "Phone,Postcode,PriceList,Reseller,RSIN,SearchCode,StartDate,Status,Type,VATNumber"
local ITEM_FILTERS = "Barcode,Class_01,Class_02,Class_03,Class_04,Class_05,Class_06,Class_07,Class_08,Class_09," ..
  "Class_10,Code,CostPriceNew,Created,Description,EndDate,ExtraDescription,FreeBoolField_01,FreeBoolField_02," ..
  "FreeBoolField_03,FreeBoolField_04,FreeBoolField_05,ID,IsSalesItem,IsStockItem,ItemGroup,Modified,SearchCode," ..
  "StartDate,Unit"

--- the entities, in the order their generated rows take Timestamps. `store` names the row set that holds
-- the data (and the Timestamps): sales invoices keep one set of sync rows (a header row, LineNumber 0, and
-- its lines) that the regular SalesInvoices and SalesInvoiceLines endpoints show as headers and lines.
_M.entities = {
  { name = "accounts", path = "crm/Accounts", bulk = "bulk/CRM/Accounts", sync = "sync/CRM/Accounts",
    key = "ID", regular = "Account", synced = "SyncAccount", entity_type = 2, size = 250,
    type = "Exact.Web.Api.Models.Account", mandatory = ACCOUNT_FILTERS, navigation = { "BankAccounts" },
    methods = "GET POST PUT DELETE" },
  { name = "contacts", path = "crm/Contacts", bulk = "bulk/CRM/Contacts", sync = "sync/CRM/Contacts",
    key = "ID", regular = "Contact", synced = "SyncContact", entity_type = 5, size = 300,
    type = "Exact.Web.Api.Models.Contact", methods = "GET POST PUT DELETE",
    mandatory = "Account,BusinessEmail,Code,Created,Email,FirstName,FullName,ID,LastName,Modified,Phone" },
  { name = "addresses", path = "crm/Addresses", bulk = "bulk/CRM/Addresses", sync = "sync/CRM/Addresses",
    key = "ID", regular = "Address", synced = "SyncAddress", entity_type = 3, size = 250,
    type = "Exact.Web.Api.Models.Address", methods = "GET POST PUT DELETE",
    mandatory = "Account,Contact,Created,ID,Main,Modified,Postcode,Type" },
  { name = "glclassifications", path = "financial/GLClassifications", bulk = "bulk/Financial/GLClassifications",
    sync = "sync/Financial/GLClassifications", key = "ID", regular = "GLClassification",
    synced = "SyncGLClassification", entity_type = 18, size = 24, methods = "GET",
    type = "Exact.Web.Api.Models.Financial.GLClassification", mandatory = "Code,Created,ID,Modified,Parent,Type" },
  { name = "glaccounts", path = "financial/GLAccounts", bulk = "bulk/Financial/GLAccounts",
    sync = "sync/Financial/GLAccounts", key = "ID", regular = "GLAccount", synced = "SyncGLAccount",
    entity_type = 7, size = 60, type = "Exact.Web.Api.Models.Financial.GLAccount",
    navigation = { "DeductibilityPercentages" }, methods = "GET POST PUT DELETE",
    mandatory = "BalanceType,Code,Created,Description,ID,Modified,Type" },
  { name = "items", path = "logistics/Items", bulk = "bulk/Logistics/Items", sync = "sync/Logistics/Items",
    key = "ID", regular = "Item", synced = "SyncItem", entity_type = 9, size = 40,
    type = "Exact.Web.Api.Models.Logistics.Item", mandatory = ITEM_FILTERS, methods = "GET POST PUT DELETE" },
  { name = "projects", path = "project/Projects", sync = "sync/Project/Projects", key = "ID",
    regular = "Project", synced = "SyncProject", entity_type = 21, size = 12, sync_endpoint = "Projects",
    type = "Exact.Web.Api.Models.Project.Project", methods = "GET POST PUT DELETE",
    navigation = { "BudgetedHoursPerHourType", "InvoiceTerms", "ProjectRestrictionEmployees",
                   "ProjectRestrictionItems", "ProjectRestrictionRebillings" },
    mandatory = "Account,Code,Created,Description,ID,Manager,Modified,Type" },
  { name = "transactionlines", path = "financialtransaction/TransactionLines",
    bulk = "bulk/Financial/TransactionLines", sync = "sync/Financial/TransactionLines", key = "ID",
    regular = "TransactionLine", synced = "SyncTransactionLine", entity_type = 1, size = 600,
    sync_endpoint = "TransactionLines", type = "Exact.Web.Api.Models.Financial.TransactionLine", methods = "GET",
    mandatory = "Account,Created,Date,EntryID,EntryNumber,FinancialPeriod,FinancialYear,GLAccount,ID," ..
      "InvoiceNumber,JournalCode,Modified,Type" },
  -- one per financial entry (the receivable of each sales entry): sync only
  { name = "paymentterms", sync = "sync/Cashflow/PaymentTerms", key = "ID", synced = "SyncPaymentTerm",
    entity_type = 10, derived = "transactionlines", type = "Exact.Web.Api.Models.Cashflow.PaymentTerm" },
  { name = "salesinvoices", path = "salesinvoice/SalesInvoices", bulk = "bulk/SalesInvoice/SalesInvoices",
    sync = "sync/SalesInvoice/SalesInvoices", key = "InvoiceID", regular = "SalesInvoice",
    synced = "SyncSalesInvoice", entity_type = 13, size = 100, sync_endpoint = "SalesInvoices",
    type = "Exact.Web.Api.Models.SalesInvoice.SalesInvoice", methods = "GET PUT DELETE",
    navigation = { "SalesInvoiceLines", "SalesInvoiceOrderChargeLines" },
    mandatory = "Created,Description,InvoiceDate,InvoiceID,InvoiceNumber,InvoiceTo,Modified,OrderedBy,Status" },
  -- no sync endpoint of its own: the sync SalesInvoices rows are the lines (and a header row per invoice)
  { name = "salesinvoicelines", path = "salesinvoice/SalesInvoiceLines",
    bulk = "bulk/SalesInvoice/SalesInvoiceLines", key = "ID", regular = "SalesInvoiceLine", store = "salesinvoices",
    derived = "salesinvoices", type = "Exact.Web.Api.Models.SalesInvoice.SalesInvoiceLine", methods = "GET",
    mandatory = "GLAccount,ID,InvoiceID,Item" },
}

local function parse(spec)
  local list, types = {}, {}
  for name, t in spec:gmatch("([%w_]+):(%a+%d*)") do
    list[#list + 1] = name
    types[name] = t
  end
  return list, types
end

_M.by_name, _M.by_path = {}, {}
for _, e in ipairs(_M.entities) do
  _M.by_name[e.name] = e
  e.store = e.store or e.name
  local set = {}
  for m in (e.methods or "GET"):gmatch("%a+") do set[m] = true end
  e.allowed = set
  if e.regular then
    e.fields, e.types = parse(_M.fields[e.regular])
    e.field_set = {}
    for _, f in ipairs(e.fields) do e.field_set[f] = true end
  end
  if e.synced then
    e.sync_fields, e.sync_types = parse(_M.fields[e.synced])
    e.sync_set = {}
    for _, f in ipairs(e.sync_fields) do e.sync_set[f] = true end
  end
  if e.mandatory then
    e.mandatory_set = {}
    for f in e.mandatory:gmatch("[^,]+") do e.mandatory_set[f] = true end
  end
  for _, kind in ipairs{ "path", "bulk", "sync" } do
    if e[kind] then _M.by_path[e[kind]:lower()] = { entity = e, kind = kind == "path" and "regular" or kind } end
  end
end

-- every type any field has (a row holds the union of its regular and sync fields)
function _M.type_of(e, name)
  return (e.types and e.types[name]) or (e.sync_types and e.sync_types[name])
end

_M.deleted_fields, _M.deleted_types = parse(_M.fields.SyncDeleted)
_M.division_fields, _M.division_types = parse(_M.fields.SystemDivision)

--- the entity sets a `--size` may name (derived ones follow their parent)
function _M.sizable()
  local out = {}
  for _, e in ipairs(_M.entities) do
    if e.size then out[#out + 1] = e.name end
  end
  return out
end

return _M
