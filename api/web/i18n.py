"""The pages' words, in Japanese (the default, as My Portal) and English.

The language is the ``kiroku_lang`` cookie, set by the switch on every page and kept across
pages; ``<html lang>`` follows it. Labels that come from the log (agency names, affairs, items)
carry both languages already.
"""

from __future__ import annotations

LANGS = ("ja", "en")
DEFAULT = "ja"

STRINGS: dict[str, tuple[str, str]] = {
    "site": ("情報提供等記録（kiroku）", "Provision records (kiroku)"),
    "skip": ("本文へ移動", "Skip to content"),
    "switch": ("English", "日本語"),
    "switch_label": ("Switch to English", "日本語に切り替え"),
    "logout": ("ログアウト", "Log out"),
    "nav_records": ("わたしの記録", "My records"),
    "nav_console": ("監査コンソール", "Audit console"),
    "nav_agency": ("機関ページ", "Agency page"),
    # login
    "login_title": ("ログイン", "Log in"),
    "login_resident": ("住民の方（利用者証明用電子証明書）", "Residents (user certificate)"),
    "login_resident_help": (
        ("証明書ファイル（PEM）と秘密鍵ファイル（PKCS#8 PEM）を選んでください。"
        "秘密鍵はこのブラウザの中で署名に使うだけで、送信されません。"),
        ("Choose your certificate file (PEM) and private key file (PKCS#8 PEM). The key only signs "
        "a login challenge inside this browser; it is never sent.")),
    "certificate": ("証明書ファイル", "Certificate file"),
    "private_key": ("秘密鍵ファイル", "Private key file"),
    "login_button": ("ログイン", "Log in"),
    "login_console": ("監査担当者・機関の方", "Auditors and agencies"),
    "login_console_help": (
        "Ed25519 の鍵ファイル（PKCS#8 PEM）で署名してログインします。鍵は送信されません。",
        "Log in by signing with your Ed25519 key file (PKCS#8 PEM). The key is never sent."),
    "principal": ("利用者", "Principal"),
    "principal_help": ("auditor:名前 または agency:機関コード",
                       "auditor:name or agency:code"),
    "key_file": ("鍵ファイル", "Key file"),
    "login_demo": ("デモ用ログイン", "Demo log-in"),
    "login_demo_help": ("デモ環境のため、ワンクリックでログインできます（テスト用の証明書）。",
                        "Demo mode: log in with one click (test certificates)."),
    "demo_resident": ("デモ住民 {n}（記録 {records} 件）", "Demo resident {n} ({records} records)"),
    "demo_auditor": ("デモ監査担当者", "Demo auditor"),
    "demo_agency": ("デモ機関：{name}", "Demo agency: {name}"),
    "login_working": ("署名しています…", "Signing…"),
    "login_failed": ("ログインできませんでした：", "Could not log in: "),
    "need_js": ("ファイルによるログインには JavaScript が必要です。",
                "Logging in with files needs JavaScript."),
    # resident list
    "records_title": ("情報提供等記録", "Records of information provision"),
    "records_intro": (
        ("あなたの特定個人情報を、どの機関がどの機関に、どの事務のために提供したかの記録です"
        "（番号法第23条）。各記録は、このブラウザが署名付きチェックポイントに対して検証します。"),
        ("Which agency provided your personal information to which, and for which affair "
        "(My Number Act Art. 23). Your browser checks each record against the signed checkpoint.")),
    "filters": ("絞り込み", "Filters"),
    "since": ("開始日", "From"),
    "until": ("終了日", "To"),
    "agency": ("機関", "Agency"),
    "affair": ("事務", "Affair"),
    "any": ("すべて", "All"),
    "apply": ("絞り込む", "Apply"),
    "clear": ("解除", "Clear"),
    "count": ("{n} 件", "{n} records"),
    "count_filtered": ("条件に合う記録 {n} 件", "{n} records match"),
    "empty": (
        "まだ記録はありません。行政機関があなたの情報を照会・提供すると、その記録がここに表示されます。",
        ("No records yet. When an agency asks for or provides information about you, the record "
        "will appear here.")),
    "empty_filtered": ("条件に合う記録はありません。条件を変えてください。",
                       "No record matches these filters. Change or clear them."),
    "date": ("照会日時", "Requested"),
    "provided_at": ("提供日時", "Provided"),
    "requester": ("照会者（情報を求めた機関）", "Requester (asked for the data)"),
    "provider": ("提供者（情報を提供した機関）", "Provider (gave the data)"),
    "requester_short": ("照会者", "Requester"),
    "provider_short": ("提供者", "Provider"),
    "why": ("事務（利用目的）", "Affair (why)"),
    "basis": ("根拠", "Legal basis"),
    "basis_row": ("主務省令第2条の表 第{row}項（{id}）", "Ordinance Art. 2 table, row {row} ({id})"),
    "items": ("提供された情報", "Information items"),
    "outcome": ("結果", "Outcome"),
    "outcome_provided": ("提供済み", "Provided"),
    "outcome_not_provided": ("提供なし", "Not provided"),
    "reason": ("理由", "Reason"),
    "details": ("詳細", "Details"),
    "next_page": ("次のページ", "Next page"),
    "first_page": ("最初のページ", "First page"),
    "as_of": ("ログ番号 {n} までを反映", "Shows the log up to entry {n}"),
    # verification mark
    "mark_checking": ("検証中", "Checking"),
    "mark_ok": ("検証済み", "Verified"),
    "mark_bad": ("検証できません", "Not verified"),
    "mark_pending": ("未検証（チェックポイント待ち）", "Not verified yet (awaiting checkpoint)"),
    "mark_help": (
        ("「検証済み」は、このブラウザが記録の葉ハッシュを計算し、包含証明をたどって、運用者の鍵で"
        "署名されたチェックポイントの根に一致することを確かめたという意味です。"),
        ("\"Verified\" means your browser recomputed the record's leaf hash, walked its inclusion "
        "proof and reached the root of a checkpoint signed by the operator's key.")),
    "operator_key": ("運用者の検証鍵", "Operator's verifier key"),
    "key_changed": (
        "運用者の検証鍵が以前この端末で見たものと異なります。公表されている鍵と照合してください。",
        ("The operator's key differs from the one this browser saw before. Compare it with the "
        "published key.")),
    "checked_against": ("検証に用いたチェックポイント", "Checked against checkpoint"),
    "tree_size": ("ログの大きさ", "Log size"),
    "log_index": ("ログ番号", "Log index"),
    "record_id": ("記録 ID", "Record id"),
    "leaf_hash": ("葉ハッシュ", "Leaf hash"),
    "record_title": ("記録の詳細", "Record details"),
    "back_to_list": ("一覧に戻る", "Back to the list"),
    "art23": ("番号法第23条の記録事項", "What the Act (Art. 23) requires to be recorded"),
    "not_found": ("見つかりません", "Not found"),
    "not_found_text": ("そのページはありません。", "There is no such page."),
    "forbidden": ("このページは表示できません", "You cannot see this page"),
    "forbidden_text": ("この利用者には表示できないページです。",
                       "This page is not for the account you are logged in with."),
    "csrf_text": ("フォームの有効期限が切れました。ページを再読み込みしてください。",
                  "The form has expired. Reload the page and try again."),
    # auditor console
    "console_title": ("監査コンソール", "Audit console"),
    "health": ("ログの状態", "Log health"),
    "checkpoints": ("最近のチェックポイント", "Latest checkpoints"),
    "signed_at": ("署名日時", "Signed at"),
    "root": ("根ハッシュ", "Root hash"),
    "signature": ("署名", "Signature"),
    "consistency": ("前との整合性", "Consistent with previous"),
    "lag": ("ビューの遅れ", "Views' lag"),
    "lag_entries": ("{n} 件", "{n} entries"),
    "agencies": ("機関別の監査報告", "Agency reports"),
    "report_title": ("監査報告：{name}", "Audit report: {name}"),
    "monthly_by_affair": ("月別・事務別の件数", "Monthly volume by affair"),
    "monthly_outcome": ("月別の提供・不提供", "Monthly provided / not provided"),
    "refusals": ("不提供（理由別）", "Refusals by reason"),
    "anomalies": ("検知された異常", "Anomalies flagged"),
    "no_anomalies": ("異常は検知されていません。", "No anomaly flagged."),
    "download_csv": ("CSV をダウンロード", "Download CSV"),
    "totals": ("合計", "Totals"),
    "as_requester": ("照会者として", "As requester"),
    "as_provider": ("提供者として", "As provider"),
    "not_provided": ("不提供", "Not provided"),
    "non_disclosed": ("不開示", "Non-disclosed"),
    "entry_title": ("ログエントリ {n}", "Log entry {n}"),
    "entry_lookup": ("エントリを表示", "Show entry"),
    "kind": ("種類", "Kind"),
    "statement_signature": ("機関の署名", "Statement signature"),
    "sig_ok": ("有効（{agency} の鍵 {key_id}）", "Valid ({agency}'s key {key_id})"),
    "sig_bad": ("無効：{reason}", "Invalid: {reason}"),
    "leaf": ("葉（正規化 JSON）", "Leaf (canonical JSON)"),
    "payload": ("内容", "Payload"),
    "erased": ("保存期間の満了により消去済み", "Erased at the end of retention"),
    "inclusion_proof": ("包含証明", "Inclusion proof"),
    "consistency_proof": ("整合性証明", "Consistency proof"),
    "chart_month": ("月", "Month"),
    "chart_count": ("件数", "Count"),
    "ok": ("良好", "Good"),
    "problem": ("問題あり", "Problem"),
    # agency page
    "agency_title": ("機関ページ：{name}", "Agency page: {name}"),
    "recent_appends": ("最近の記録（受領証）", "Recent appends (receipts)"),
    "recent_help": ("直近 {n} 件のログエントリのうち、この機関が署名したもの。",
                    "Entries this agency signed among the latest {n} log entries."),
    "request_id": ("照会番号", "Request id"),
    "logged_at": ("記録日時", "Logged at"),
    "receipt": ("受領証", "Receipt"),
    "no_appends": ("直近の記録はありません。", "No recent appends."),
    # non-disclosure flags (auditors)
    "flags_title": ("不開示の履歴", "Non-disclosure history"),
    "flags_withheld": ("住民に非表示", "Withheld from the resident"),
    "flags_none": ("住民に表示されています", "Shown to the resident"),
    "flag": ("フラグ", "Flag"),
    "flag_action": ("操作", "Action"),
    "flag_set": ("設定", "Set"),
    "flag_lifted": ("解除", "Lifted"),
    "flag_non_disclosure": ("不開示", "Non-disclosure"),
    "flag_self_information_block": ("自己情報提供不可", "Self-information block"),
    "disclose_until": ("開示予定", "until"),
    # proxies (代理人)
    "nav_proxies": ("代理人", "Proxies"),
    "proxies_title": ("代理人の登録", "Your proxies"),
    "proxies_intro": (
        ("代理人（法定代理人・成年後見人・任意代理人）は、あなたの記録を閲覧できます。"
        "不開示の記録は代理人にも表示されません。登録と取消はログに記録されます。"),
        ("A proxy (legal representative, adult guardian or appointed proxy) can read your "
        "records; withheld records are never shown to them. Registering and cancelling are "
        "recorded in the log.")),
    "no_proxies": ("代理人は登録されていません。", "You have no proxy."),
    "register_proxy": ("代理人を登録する", "Register a proxy"),
    "proxy_certificate": ("代理人の証明書ファイル（PEM）", "The proxy's certificate file (PEM)"),
    "relationship": ("続柄・種類", "Relationship"),
    "rel_legal_representative": ("法定代理人", "Legal representative"),
    "rel_adult_guardian": ("成年後見人", "Adult guardian"),
    "rel_appointed": ("任意代理人", "Appointed proxy"),
    "registered_at": ("登録日時", "Registered"),
    "cancel_proxy": ("取り消す", "Cancel"),
    "proxy_registered": ("代理人を登録しました。", "The proxy is registered."),
    "proxy_cancelled": ("代理人の登録を取り消しました。", "The proxy is cancelled."),
    "proxy_refused": ("登録できませんでした：", "Could not register: "),
    "principals_title": ("代理している方", "People you act for"),
    "no_principals": ("代理している方はいません。", "You act for nobody."),
    "acting_for": ("{relationship}として閲覧しています。", "You are reading as {relationship}."),
    "you_act_for": ("{n} 人の代理人として閲覧できます", "You act as proxy for {n} people"),
    "principal_n": ("代理している方 {n}", "Person {n}"),
    # notices (お知らせ), alert subscriptions, agencies' delivery counts
    "nav_notices": ("お知らせ", "Notices"),
    "nav_subscriptions": ("通知設定", "Alerts"),
    "notices_title": ("お知らせ", "Notices"),
    "notices_intro": (
        ("行政機関からあなたへのお知らせです（期間中のもの）。未読のものが先に表示されます。"
        "お知らせは発行した機関の署名付きでログに記録されています。"),
        ("Notices from agencies to you, while they are valid; unread ones come first. Each is "
        "recorded in the log, signed by the agency that issued it.")),
    "notices_count": ("{n} 件（未読 {unread} 件）", "{n} notices ({unread} unread)"),
    "notices_empty": ("今お知らせはありません。行政機関からのお知らせはここに表示されます。",
                      "No notices now. Notices from agencies will appear here."),
    "notices_acting_mark": ("既読にすると、ご本人にも既読と表示されます。",
                            "Marking a notice read marks it read for them too."),
    "notice_unread": ("未読", "Unread"),
    "notice_read_at": ("既読（{at}）", "Read ({at})"),
    "notice_mark_read": ("既読にする", "Mark as read"),
    "notice_marked": ("既読にしました。", "Marked as read."),
    "notice_category": ("分類", "Category"),
    "notice_validity": ("掲載期間", "Valid"),
    "notice_valid_until": ("掲載期限", "Valid until"),
    "notice_issuer": ("発行機関", "Issued by"),
    "notice_target": ("対象", "Addressed to"),
    "notice_target_individual": ("あなた個人", "You personally"),
    "notice_target_group": ("条件に該当する方", "Everyone it applies to"),
    "notice_form": ("申請", "Application"),
    "notice_form_open": ("申請フォームを開く", "Open the application form"),
    "notice_title_col": ("件名", "Title"),
    "cat_childcare": ("保育・子育て", "Childcare"),
    "cat_vaccination": ("予防接種", "Vaccination"),
    "cat_health_check": ("健診", "Health check"),
    "cat_national_health_insurance": ("国民健康保険", "National Health Insurance"),
    "cat_disaster": ("防災・災害", "Disaster"),
    "cat_tax": ("税", "Tax"),
    "cat_pension": ("年金", "Pension"),
    "cat_welfare": ("福祉", "Welfare"),
    "cat_other": ("その他", "Other"),
    "delivery_title": ("お知らせの配信状況", "Notice delivery"),
    "delivery_help": (
        "各お知らせが現在何人に該当し、何人が既読にしたかの件数です。誰が読んだかは表示されません。",
        ("How many residents each notice applies to now and how many marked it read. Who read "
        "it is never shown.")),
    "delivery_applies": ("該当者数", "Applies to"),
    "delivery_read": ("既読数", "Read"),
    "delivery_none": ("発行したお知らせはありません。", "No notices issued."),
    "subscriptions_title": ("記録の通知設定", "Alerts on new records"),
    "subscriptions_intro": (
        ("あなたについての情報提供等記録が新たに記録されたとき、メールまたは Webhook でお知らせします。"
        "通知には「新しい記録があります」という案内とこのサイトへのリンクだけが含まれます。"),
        ("Be told by e-mail or webhook when a new record about you is logged. An alert says only "
        "that a new record is in your view, with a link to this site.")),
    "subscriptions_list": ("登録済みの通知先", "Your alert addresses"),
    "no_subscriptions": ("通知先は登録されていません。", "You have no alert address."),
    "subscription_channel": ("通知方法", "Channel"),
    "channel_email": ("メール", "E-mail"),
    "channel_webhook": ("Webhook", "Webhook"),
    "subscription_target": ("宛先（メールアドレスまたは URL）", "Address or URL"),
    "subscription_target_help": (
        "Webhook の URL は https:// で始まるものに限ります。メールアドレスは確認コードで確認します。",
        "Webhook URLs must start with https://. E-mail addresses are confirmed with a code."),
    "subscription_status": ("状態", "Status"),
    "subscription_active": ("有効", "Active"),
    "subscription_pending": ("確認待ち", "Awaiting confirmation"),
    "subscription_actions": ("操作", "Actions"),
    "add_subscription": ("通知先を追加する", "Add an alert address"),
    "remove_subscription": ("削除する", "Remove"),
    "confirmation_code": ("確認コード（メールに記載）", "Confirmation code (from the e-mail)"),
    "confirm_subscription": ("確認する", "Confirm"),
    "subscription_done_pending": (
        "確認コードをメールで送りました。届いたコードを下の欄に入力してください。",
        "A confirmation code was mailed to the address. Enter it below."),
    "subscription_done_confirmed": ("メールアドレスを確認しました。通知を開始します。",
                               "The address is confirmed; alerts start now."),
    "subscription_done_removed": ("通知先を削除しました。", "The alert address is removed."),
    "subscription_refused": ("登録できませんでした：", "Could not save: "),
    "subscriptions_full": ("通知先は {n} 件までです。追加するには先に削除してください。",
                           "At most {n} alert addresses; remove one to add another."),
    "webhook_secret_title": ("Webhook の署名鍵", "Your webhook's signing secret"),
    "webhook_secret_help": (
        ("この鍵は今だけ表示されます。控えておき、届いた通知の Kiroku-Signature ヘッダー"
        "（HMAC-SHA256）の確認に使ってください。"),
        ("This secret is shown only now. Keep it, and use it to check the Kiroku-Signature "
        "header (HMAC-SHA256) of each alert you receive.")),
    # E-applications (api/web/applications.py, docs/applications.md) ---------------------------
    "nav_applications": ("申請", "Applications"),
    "applications_title": ("わたしの申請", "My applications"),
    "applications_intro": (
        "お知らせから申請した手続きと、その手続きのために行われた情報提供、結果を一つの流れで確認できます。",
        ("The applications you made from notices, with the provisions they caused and their "
         "decisions, each as one thread.")),
    "application_form": ("手続き", "Form"),
    "application_agency": ("申請先", "Agency"),
    "application_status": ("状態", "Status"),
    "application_submitted": ("申請日時", "Submitted"),
    "application_status_submitted": ("申請済み", "Submitted"),
    "application_status_received": ("受付済み", "Received"),
    "application_status_approved": ("承認", "Approved"),
    "application_status_rejected": ("不承認", "Rejected"),
    "no_applications": ("申請はまだありません。", "You have made no application yet."),
    "application_new_title": ("申請する", "Apply"),
    "application_open_form": ("この手続きを申請する", "Apply for this"),
    "application_from_notice": ("お知らせ：", "From the notice:"),
    "application_answers": ("申請内容", "Your answers"),
    "optional": ("任意", "optional"),
    "forward_title": ("転居の連絡（任意）", "Tell partners about your move (optional)"),
    "forward_help": (
        ("チェックした事業者にだけ、承認後に新しい住所と転居日を連絡します。"
         "事業者ごとに同意してください。チェックしない事業者には何も送りません。"),
        ("Only the organisations you tick receive your new address and moving date, once the "
         "change is approved. Consent to each one; nothing is sent to the others.")),
    "forward_consent": ("{name} に連絡することに同意する", "I consent to telling {name}"),
    "customer_number": ("{name} のお客さま番号", "Your customer number at {name}"),
    "application_sign": ("電子署名", "Signature"),
    "application_sign_help": (
        ("ログインに使った証明書と秘密鍵を選んでください。"
         "秘密鍵はこのブラウザの中で申請内容への署名に使うだけで、送信されません。"),
        ("Choose the certificate you logged in with and its private key. The key only signs "
         "your answers inside this browser; it is never sent.")),
    "application_submit": ("署名して申請する", "Sign and apply"),
    "application_refused": ("申請できませんでした：", "Could not apply: "),
    "application_title": ("申請", "Application"),
    "thread_notice": ("お知らせ", "Notice"),
    "thread_application": ("申請", "Application"),
    "thread_received": ("{agency} が受け付けました。", "Received by {agency}."),
    "thread_provisions": ("この申請のための情報提供", "Provisions for this application"),
    "thread_provisions_help": (
        "添付書類の代わりに、申請先が他の機関に照会した記録です。",
        ("Instead of you attaching certificates, the agency asked other agencies for the data: "
         "these are the records.")),
    "thread_no_provisions": ("まだありません。", "None yet."),
    "thread_decision": ("結果", "Decision"),
    "thread_no_decision": ("審査中です。", "Not decided yet."),
    "thread_forwards": ("転居の連絡先", "Partners told about the move"),
    "forward_received": ("受領済み（{at}）", "received ({at})"),
    "forward_pending": ("承認後に連絡します", "to be told once approved"),
}


_TABLES = {lang: {key: pair[i] for key, pair in STRINGS.items()} for i, lang in enumerate(LANGS)}


def table(lang: str) -> dict[str, str]:
    """Every string in one language (templates read ``T.key`` inside loops: a dictionary look-up
    instead of a function call per string and record)."""
    return _TABLES[pick(lang)]


def pick(lang: str | None) -> str:
    return lang if lang in LANGS else DEFAULT


def translate(lang: str, key: str, **values: object) -> str:
    text = STRINGS[key][0 if lang == "ja" else 1]
    return text.format(**values) if values else text
