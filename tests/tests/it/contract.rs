//! One contract suite for every `Store` implementation: each case runs unchanged on the
//! embedded SQLite store and on DynamoDB (moto's server).

use std::sync::Arc;

use chrono::Duration;
use pipes_core::ports::{Claim, CompletionError, Release, SignupCompletion, WriteError};
use pipes_core::session::{Abandon, AbandonEvent, SessionFailure};
use pipes_core::usecases::admin;
use pipes_core::{
    AppId, AppKey, Clock, HealthEvent, HealthReason, HealthStatus, KeyId, Metadata, PhoneNumberId,
    RedirectUrl, SecretHash, SessionId, SessionStatus, SignupSession, SignupToken, Slug, Store,
    StoreError, SystemClock,
};
use serde_json::json;

fn session(app: &AppId) -> (SignupSession, SignupToken) {
    let token = SignupToken::generate();
    let now = SystemClock.now();
    let s = SignupSession {
        id: SessionId::generate(),
        app_id: app.clone(),
        token_hash: token.hash(),
        status: SessionStatus::Pending,
        redirect_url: RedirectUrl::parse("https://partner.example/done?x=1", &[]).unwrap(),
        metadata: Metadata::parse(json!({"partnerId": "p_123", "nested": {"a": [1, 2]}})).unwrap(),
        created_at: now,
        expires_at: now + Duration::hours(24),
        completed_at: None,
        phone_number_id: None,
        error: None,
        abandons: Vec::new(),
    };
    (s, token)
}

async fn new_app(store: &dyn Store, slug: &str) -> admin::CreatedApp {
    admin::create_app(
        store,
        SystemClock.now(),
        slug,
        "Acme CRM",
        &["https://partner.example".into()],
    )
    .await
    .unwrap()
}

pub async fn apps_are_found_by_id_slug_and_key(store: Arc<dyn Store>) {
    let created = new_app(&*store, "acme").await;
    let app = &created.app;
    assert_eq!(store.app(&app.id).await.unwrap().as_ref(), Some(app));
    assert_eq!(
        store
            .app_by_slug(&Slug::parse("acme").unwrap())
            .await
            .unwrap()
            .as_ref(),
        Some(app)
    );
    assert_eq!(
        store
            .app_for_key(&created.key.hash())
            .await
            .unwrap()
            .as_ref(),
        Some(app)
    );
    // The live key's id comes with its App (login links record which key minted them).
    let key_id = store.list_keys(&app.id).await.unwrap()[0].key_id.clone();
    assert_eq!(
        store.live_key(&created.key.hash()).await.unwrap(),
        Some((app.clone(), key_id))
    );
    assert_eq!(store.app(&AppId::generate()).await.unwrap(), None);
    assert_eq!(
        store
            .app_by_slug(&Slug::parse("nobody").unwrap())
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.app_for_key(&AppKey::generate().hash()).await.unwrap(),
        None
    );
    let listed = store.list_apps().await.unwrap();
    assert_eq!(listed, vec![app.clone()]);
}

pub async fn a_taken_slug_is_refused_and_changes_nothing(store: Arc<dyn Store>) {
    let first = new_app(&*store, "acme").await;
    let second = admin::create_app(&*store, SystemClock.now(), "acme", "Impostor", &[]).await;
    assert!(
        matches!(second, Err(admin::AdminError::SlugTaken)),
        "{second:?}"
    );
    let by_slug = store
        .app_by_slug(&Slug::parse("acme").unwrap())
        .await
        .unwrap();
    assert_eq!(
        by_slug.map(|a| a.name.as_str().to_owned()),
        Some("Acme CRM".into())
    );
    assert_eq!(store.list_apps().await.unwrap().len(), 1);
    assert_eq!(store.list_keys(&first.app.id).await.unwrap().len(), 1);
}

pub async fn keys_rotate_and_revoke(store: Arc<dyn Store>) {
    let created = new_app(&*store, "acme").await;
    let app = created.app.clone();
    let second = admin::create_key(&*store, SystemClock.now(), &app)
        .await
        .unwrap();
    assert_eq!(
        store
            .app_for_key(&second.key.hash())
            .await
            .unwrap()
            .as_ref(),
        Some(&app)
    );

    let keys = store.list_keys(&app.id).await.unwrap();
    let ids: Vec<&KeyId> = keys.iter().map(|k| &k.key_id).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&&created.key_id) && ids.contains(&&second.key_id));

    let at = SystemClock.now();
    assert!(
        store
            .revoke_key(&app.id, &created.key_id, at)
            .await
            .unwrap()
    );
    assert_eq!(store.app_for_key(&created.key.hash()).await.unwrap(), None);
    assert_eq!(
        store
            .app_for_key(&second.key.hash())
            .await
            .unwrap()
            .as_ref(),
        Some(&app)
    );

    // Revoking again keeps the first revocation time.
    let later = at + Duration::minutes(5);
    assert!(
        store
            .revoke_key(&app.id, &created.key_id, later)
            .await
            .unwrap()
    );
    let revoked = store.list_keys(&app.id).await.unwrap();
    let first = revoked.iter().find(|k| k.key_id == created.key_id).unwrap();
    assert_eq!(first.revoked_at, Some(at));

    assert!(
        !store
            .revoke_key(&app.id, &KeyId::generate(), at)
            .await
            .unwrap()
    );
}

pub async fn another_apps_key_cannot_be_revoked_through_this_app(store: Arc<dyn Store>) {
    let a = new_app(&*store, "acme").await;
    let b = new_app(&*store, "bravo").await;
    assert!(
        !store
            .revoke_key(&a.app.id, &b.key_id, SystemClock.now())
            .await
            .unwrap()
    );
    assert_eq!(store.app_for_key(&b.key.hash()).await.unwrap(), Some(b.app));
}

pub async fn a_key_for_an_unknown_app_is_refused(store: Arc<dyn Store>) {
    let ghost = new_app(&*store, "acme").await.app;
    let mut unknown = ghost.clone();
    unknown.id = AppId::generate();
    let res = admin::create_key(&*store, SystemClock.now(), &unknown).await;
    assert!(
        matches!(res, Err(admin::AdminError::AppNotFound)),
        "{res:?}"
    );
    assert_eq!(store.list_keys(&unknown.id).await.unwrap(), vec![]);
}

pub async fn sessions_round_trip_by_id_and_token(store: Arc<dyn Store>) {
    let app = new_app(&*store, "acme").await.app;
    let (mut s, token) = session(&app.id);
    s.abandons.push(Abandon {
        at: s.created_at,
        event: AbandonEvent::Cancel,
        step: Some("PHONE_NUMBER_SETUP".into()),
        error_code: None,
        error_message: None,
        meta_session_id: None,
        waba_id: None,
    });
    s.error = Some(SessionFailure {
        code: "meta_validation_failed".into(),
        message: "m".into(),
    });
    store.insert_session(&s).await.unwrap();
    assert_eq!(store.session(&s.id).await.unwrap(), Some(s.clone()));
    assert_eq!(
        store.session_by_token(&token.hash()).await.unwrap(),
        Some(s.clone())
    );
    assert_eq!(store.session(&SessionId::generate()).await.unwrap(), None);
    assert_eq!(
        store
            .session_by_token(&SignupToken::generate().hash())
            .await
            .unwrap(),
        None
    );
}

pub async fn a_session_id_or_token_is_never_stored_twice(store: Arc<dyn Store>) {
    let app = new_app(&*store, "acme").await.app;
    let (s, _) = session(&app.id);
    store.insert_session(&s).await.unwrap();

    let (mut same_token, _) = session(&app.id);
    same_token.token_hash = s.token_hash.clone();
    let res = store.insert_session(&same_token).await;
    assert!(matches!(res, Err(StoreError::Conflict(_))), "{res:?}");
    assert_eq!(store.session(&same_token.id).await.unwrap(), None);

    let (mut same_id, _) = session(&app.id);
    same_id.id = s.id.clone();
    let res = store.insert_session(&same_id).await;
    assert!(matches!(res, Err(StoreError::Conflict(_))), "{res:?}");
    assert_eq!(
        store.session_by_token(&same_id.token_hash).await.unwrap(),
        None
    );
    assert_eq!(store.session(&s.id).await.unwrap(), Some(s));
}

pub async fn hashes_are_looked_up_exactly(store: Arc<dyn Store>) {
    let created = new_app(&*store, "acme").await;
    let near = SecretHash::of(&format!("{} ", created.key.expose()));
    assert_eq!(store.app_for_key(&near).await.unwrap(), None);
}

async fn pending_session(store: &dyn Store, app: &AppId) -> (SignupSession, SignupToken) {
    let (s, token) = session(app);
    store.insert_session(&s).await.unwrap();
    (s, token)
}

pub async fn a_session_is_claimed_by_one_caller_at_a_time(store: Arc<dyn Store>) {
    let app = new_app(&*store, "acme").await.app;
    let (s, token) = pending_session(&*store, &app.id).await;
    let now = SystemClock.now();
    let lease = now + Duration::seconds(60);
    let won = store
        .claim_session(&token.hash(), "claim-a", now, lease)
        .await
        .unwrap();
    let Claim::Won(claimed) = won else {
        panic!("{won:?}")
    };
    assert_eq!(
        (claimed.id.clone(), claimed.status),
        (s.id.clone(), SessionStatus::Completing)
    );
    assert_eq!(
        store
            .claim_session(&token.hash(), "claim-b", now, lease)
            .await
            .unwrap(),
        Claim::Held
    );
    // Once the lease has run out, another caller may take over.
    let later = lease + Duration::seconds(1);
    let retaken = store
        .claim_session(
            &token.hash(),
            "claim-b",
            later,
            later + Duration::seconds(60),
        )
        .await
        .unwrap();
    assert!(matches!(retaken, Claim::Won(_)), "{retaken:?}");
    // The first holder's claim is gone.
    let release = Release {
        status: SessionStatus::Pending,
        error: None,
    };
    assert!(
        !store
            .release_claim(&s.id, "claim-a", &release)
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .claim_session(&SignupToken::generate().hash(), "c", now, lease)
            .await
            .unwrap(),
        Claim::NotFound
    );
}

pub async fn released_and_failed_sessions_can_be_claimed_again(store: Arc<dyn Store>) {
    let app = new_app(&*store, "acme").await.app;
    let (s, token) = pending_session(&*store, &app.id).await;
    let now = SystemClock.now();
    let lease = now + Duration::seconds(60);
    store
        .claim_session(&token.hash(), "a", now, lease)
        .await
        .unwrap();
    let failure = SessionFailure {
        code: "meta_validation_failed".into(),
        message: "no".into(),
    };
    let release = Release {
        status: SessionStatus::Failed,
        error: Some(failure.clone()),
    };
    assert!(store.release_claim(&s.id, "a", &release).await.unwrap());
    let read = store.session(&s.id).await.unwrap().unwrap();
    assert_eq!(
        (read.status, read.error),
        (SessionStatus::Failed, Some(failure))
    );
    assert!(matches!(
        store
            .claim_session(&token.hash(), "b", now, lease)
            .await
            .unwrap(),
        Claim::Won(_)
    ));
    let back = Release {
        status: SessionStatus::Pending,
        error: None,
    };
    assert!(store.release_claim(&s.id, "b", &back).await.unwrap());
    assert_eq!(
        store.session(&s.id).await.unwrap().unwrap().status,
        SessionStatus::Pending
    );
}

pub async fn expired_sessions_cannot_be_claimed(store: Arc<dyn Store>) {
    let app = new_app(&*store, "acme").await.app;
    let (s, token) = pending_session(&*store, &app.id).await;
    let after = s.expires_at + Duration::seconds(1);
    let res = store
        .claim_session(&token.hash(), "a", after, after + Duration::seconds(60))
        .await;
    assert_eq!(res.unwrap(), Claim::Expired);
    assert_eq!(
        store.session(&s.id).await.unwrap().unwrap().status,
        SessionStatus::Pending
    );
}

fn completion(
    s: &SignupSession,
    claim: &str,
    phone: &str,
    expected: Option<u64>,
) -> SignupCompletion {
    let now = SystemClock.now();
    let mut number = pipes_tests::sample_number(&s.app_id, phone, &s.id, now);
    number.version = expected.map_or(1, |v| v + 1);
    SignupCompletion {
        previous_waba: None,
        session_id: s.id.clone(),
        claim_id: claim.into(),
        completed_at: now,
        number,
        expected_version: expected,
        history: None,
    }
}

pub async fn completing_a_signup_writes_session_number_and_owner_together(store: Arc<dyn Store>) {
    let app = new_app(&*store, "acme").await.app;
    let (s, token) = pending_session(&*store, &app.id).await;
    let now = SystemClock.now();
    store
        .claim_session(&token.hash(), "a", now, now + Duration::seconds(60))
        .await
        .unwrap();

    let wrong_claim = completion(&s, "b", "1000000000001", None);
    assert!(matches!(
        store.complete_signup(&wrong_claim).await,
        Err(CompletionError::ClaimLost)
    ));
    let phone = PhoneNumberId::parse("1000000000001").unwrap();
    assert_eq!(
        store.number(&app.id, &phone).await.unwrap(),
        None,
        "nothing written"
    );
    assert_eq!(store.number_owner(&phone).await.unwrap(), None);

    let done = completion(&s, "a", "1000000000001", None);
    store.complete_signup(&done).await.unwrap();
    let read = store.session(&s.id).await.unwrap().unwrap();
    assert_eq!(read.status, SessionStatus::Completed);
    assert_eq!(read.phone_number_id.as_deref(), Some("1000000000001"));
    assert_eq!(read.completed_at, Some(done.completed_at));
    assert_eq!(
        store.number(&app.id, &phone).await.unwrap(),
        Some(done.number.clone())
    );
    assert_eq!(
        store.number_owner(&phone).await.unwrap(),
        Some(app.id.clone())
    );
    assert_eq!(
        store
            .claim_session(&token.hash(), "c", now, now + Duration::seconds(60))
            .await
            .unwrap(),
        Claim::Used
    );
}

pub async fn a_number_owned_by_another_app_is_refused_whole(store: Arc<dyn Store>) {
    let a = new_app(&*store, "acme").await.app;
    let b = new_app(&*store, "bravo").await.app;
    let now = SystemClock.now();
    let lease = now + Duration::seconds(60);
    let (sa, ta) = pending_session(&*store, &a.id).await;
    store
        .claim_session(&ta.hash(), "a", now, lease)
        .await
        .unwrap();
    store
        .complete_signup(&completion(&sa, "a", "1000000000001", None))
        .await
        .unwrap();

    let (sb, tb) = pending_session(&*store, &b.id).await;
    store
        .claim_session(&tb.hash(), "b", now, lease)
        .await
        .unwrap();
    let res = store
        .complete_signup(&completion(&sb, "b", "1000000000001", None))
        .await;
    assert!(
        matches!(res, Err(CompletionError::OwnedByAnotherApp)),
        "{res:?}"
    );
    let phone = PhoneNumberId::parse("1000000000001").unwrap();
    assert_eq!(store.number(&b.id, &phone).await.unwrap(), None);
    assert_eq!(
        store.session(&sb.id).await.unwrap().unwrap().status,
        SessionStatus::Completing
    );
}

pub async fn a_stale_number_version_is_refused(store: Arc<dyn Store>) {
    let app = new_app(&*store, "acme").await.app;
    let now = SystemClock.now();
    let lease = now + Duration::seconds(60);
    let (s1, t1) = pending_session(&*store, &app.id).await;
    store
        .claim_session(&t1.hash(), "a", now, lease)
        .await
        .unwrap();
    store
        .complete_signup(&completion(&s1, "a", "1000000000001", None))
        .await
        .unwrap();

    let (s2, t2) = pending_session(&*store, &app.id).await;
    store
        .claim_session(&t2.hash(), "b", now, lease)
        .await
        .unwrap();
    let as_new = store
        .complete_signup(&completion(&s2, "b", "1000000000001", None))
        .await;
    assert!(
        matches!(as_new, Err(CompletionError::NumberChanged)),
        "{as_new:?}"
    );
    let stale = store
        .complete_signup(&completion(&s2, "b", "1000000000001", Some(7)))
        .await;
    assert!(
        matches!(stale, Err(CompletionError::NumberChanged)),
        "{stale:?}"
    );
    let mut update = completion(&s2, "b", "1000000000001", Some(1));
    update.history = Some(HealthEvent {
        at: now,
        from: HealthStatus::Down,
        to: HealthStatus::Pending,
        reason: Some(HealthReason::SetupPending),
        message: None,
    });
    store.complete_signup(&update).await.unwrap();
    let phone = PhoneNumberId::parse("1000000000001").unwrap();
    let read = store.number(&app.id, &phone).await.unwrap().unwrap();
    assert_eq!((read.version, read.session_id), (2, s2.id));
}

pub async fn abandons_are_appended_until_the_session_completes(store: Arc<dyn Store>) {
    let app = new_app(&*store, "acme").await.app;
    let (s, token) = pending_session(&*store, &app.id).await;
    let abandon = |step: &str| Abandon {
        at: SystemClock.now(),
        event: AbandonEvent::Cancel,
        step: Some(step.into()),
        error_code: None,
        error_message: None,
        meta_session_id: None,
        waba_id: None,
    };
    assert!(
        store
            .record_abandon(&s.id, &abandon("PHONE_NUMBER_SETUP"))
            .await
            .unwrap()
    );
    assert!(
        store
            .record_abandon(&s.id, &abandon("PERMISSIONS"))
            .await
            .unwrap()
    );
    let read = store.session(&s.id).await.unwrap().unwrap();
    let steps: Vec<_> = read
        .abandons
        .iter()
        .map(|a| a.step.clone().unwrap())
        .collect();
    assert_eq!(steps, ["PHONE_NUMBER_SETUP", "PERMISSIONS"]);

    let now = SystemClock.now();
    store
        .claim_session(&token.hash(), "a", now, now + Duration::seconds(60))
        .await
        .unwrap();
    store
        .complete_signup(&completion(&s, "a", "1000000000002", None))
        .await
        .unwrap();
    assert!(!store.record_abandon(&s.id, &abandon("LATE")).await.unwrap());
    assert!(
        !store
            .record_abandon(&SessionId::generate(), &abandon("X"))
            .await
            .unwrap()
    );
    assert_eq!(
        store.session(&s.id).await.unwrap().unwrap().abandons.len(),
        2
    );
}

/// A number signed up through a real claim and completion.
async fn signed_up(store: &dyn Store, app: &AppId, phone: &str) -> pipes_core::Number {
    let (s, token) = pending_session(store, app).await;
    let now = SystemClock.now();
    store
        .claim_session(&token.hash(), "c", now, now + Duration::seconds(60))
        .await
        .unwrap();
    let done = completion(&s, "c", phone, None);
    store.complete_signup(&done).await.unwrap();
    done.number
}

fn event(from: HealthStatus, to: HealthStatus, at: chrono::DateTime<chrono::Utc>) -> HealthEvent {
    HealthEvent {
        at,
        from,
        to,
        reason: Some(HealthReason::TokenInvalid),
        message: Some("m".into()),
    }
}

pub async fn number_writes_are_conditional_on_the_version_read(store: Arc<dyn Store>) {
    let app = new_app(&*store, "acme").await.app;
    let mut n = signed_up(&*store, &app.id, "1000000000001").await;
    let t0 = SystemClock.now();
    n.health.status = HealthStatus::Down;
    n.version = 2;
    n.updated_at = t0;
    store
        .save_number(
            &n,
            1,
            Some(&event(HealthStatus::Pending, HealthStatus::Down, t0)),
        )
        .await
        .unwrap();
    let stale = store.save_number(&n, 1, None).await;
    assert!(matches!(stale, Err(WriteError::Changed)), "{stale:?}");
    let read = store
        .number(&app.id, &n.phone_number_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((read.version, read.health.status), (2, HealthStatus::Down));

    let t1 = t0 + Duration::seconds(5);
    n.health.status = HealthStatus::Healthy;
    n.version = 3;
    n.updated_at = t1;
    store
        .save_number(
            &n,
            2,
            Some(&event(HealthStatus::Down, HealthStatus::Healthy, t1)),
        )
        .await
        .unwrap();
    let history = store
        .history(&app.id, &n.phone_number_id, 10)
        .await
        .unwrap();
    let seen: Vec<_> = history.iter().map(|e| (e.from, e.to)).collect();
    assert_eq!(
        seen,
        [
            (HealthStatus::Down, HealthStatus::Healthy),
            (HealthStatus::Pending, HealthStatus::Down)
        ]
    );
    assert_eq!(
        store
            .history(&app.id, &n.phone_number_id, 1)
            .await
            .unwrap()
            .len(),
        1
    );
}

pub async fn removal_releases_the_number_for_signup_elsewhere(store: Arc<dyn Store>) {
    let a = new_app(&*store, "acme").await.app;
    let b = new_app(&*store, "bravo").await.app;
    let n = signed_up(&*store, &a.id, "1000000000001").await;
    let other = signed_up(&*store, &a.id, "1000000000002").await;
    let mut live = store.live_numbers_in_waba(&n.waba_id).await.unwrap();
    live.sort();
    assert_eq!(
        live,
        vec![
            (a.id.clone(), n.phone_number_id.clone()),
            (a.id.clone(), other.phone_number_id.clone())
        ]
    );

    let now = SystemClock.now();
    let mut removed = n.clone();
    removed.health.status = HealthStatus::Removed;
    removed.sealed_token = None;
    removed.version = 2;
    removed.updated_at = now;
    let stale = store
        .remove_number(
            &removed,
            7,
            &event(HealthStatus::Pending, HealthStatus::Removed, now),
        )
        .await;
    assert!(matches!(stale, Err(WriteError::Changed)));
    assert_eq!(
        store.number_owner(&n.phone_number_id).await.unwrap(),
        Some(a.id.clone()),
        "nothing released"
    );
    store
        .remove_number(
            &removed,
            1,
            &event(HealthStatus::Pending, HealthStatus::Removed, now),
        )
        .await
        .unwrap();
    assert_eq!(store.number_owner(&n.phone_number_id).await.unwrap(), None);
    assert_eq!(
        store.live_numbers_in_waba(&n.waba_id).await.unwrap(),
        vec![(a.id.clone(), other.phone_number_id.clone())]
    );
    let read = store
        .number(&a.id, &n.phone_number_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (read.health.status, read.sealed_token),
        (HealthStatus::Removed, None)
    );

    signed_up(&*store, &b.id, "1000000000001").await;
    assert_eq!(
        store.number_owner(&n.phone_number_id).await.unwrap(),
        Some(b.id)
    );
}

pub async fn numbers_page_in_order_each_exactly_once(store: Arc<dyn Store>) {
    let app = new_app(&*store, "acme").await.app;
    let other = new_app(&*store, "bravo").await.app;
    signed_up(&*store, &other.id, "1000000000999").await;
    let mut all = Vec::new();
    for i in 0..23 {
        let mut n = signed_up(&*store, &app.id, &format!("10000000001{i:02}")).await;
        if i % 3 == 0 {
            n.health.status = HealthStatus::Healthy;
            n.version = 2;
            store.save_number(&n, 1, None).await.unwrap();
        }
        all.push(n.phone_number_id);
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_numbers(&app.id, None, 5, after.as_ref())
            .await
            .unwrap();
        assert!(page.numbers.len() <= 5);
        seen.extend(page.numbers.iter().map(|n| n.phone_number_id.clone()));
        match page.next_after {
            Some(a) => after = Some(a),
            None => break,
        }
    }
    assert_eq!(
        seen, all,
        "every number once, in id order, none of the other App's"
    );
    let healthy = store
        .list_numbers(&app.id, Some(HealthStatus::Healthy), 100, None)
        .await
        .unwrap();
    assert_eq!(healthy.numbers.len(), 8);
    assert!(
        healthy
            .numbers
            .iter()
            .all(|n| n.health.status == HealthStatus::Healthy)
    );
    assert_eq!(healthy.next_after, None);
    let first = store
        .list_numbers(&app.id, Some(HealthStatus::Healthy), 3, None)
        .await
        .unwrap();
    let rest = store
        .list_numbers(
            &app.id,
            Some(HealthStatus::Healthy),
            10,
            first.next_after.as_ref(),
        )
        .await
        .unwrap();
    assert_eq!(first.numbers.len() + rest.numbers.len(), 8);
}

pub async fn due_numbers_come_stalest_first(store: Arc<dyn Store>) {
    let app = new_app(&*store, "acme").await.app;
    let now = SystemClock.now();
    let mut expected = Vec::new();
    for (i, offset) in [-30i64, -90, 60, -10, -50].into_iter().enumerate() {
        let mut n = signed_up(&*store, &app.id, &format!("100000000020{i}")).await;
        n.health.next_check_at = Some(now + Duration::seconds(offset));
        n.version = 2;
        store.save_number(&n, 1, None).await.unwrap();
        if offset <= 0 {
            expected.push((offset, n.phone_number_id.clone()));
        }
    }
    expected.sort();
    let due = store.due_numbers(now, 10).await.unwrap();
    let ids: Vec<_> = due.iter().map(|d| d.phone_number_id.clone()).collect();
    assert_eq!(
        ids,
        expected.iter().map(|e| e.1.clone()).collect::<Vec<_>>()
    );
    assert!(due.iter().all(|d| d.app_id == app.id));
    assert_eq!(store.due_numbers(now, 2).await.unwrap().len(), 2);
}

pub async fn login_links_work_once_and_expire(store: Arc<dyn Store>) {
    use pipes_core::ports::{LinkUse, LoginLink};
    let app = new_app(&*store, "acme").await.app;
    let key = store.list_keys(&app.id).await.unwrap()[0].key_id.clone();
    let now = SystemClock.now();
    let link = |hash: &SecretHash, expires| LoginLink {
        token_hash: hash.clone(),
        app_id: app.id.clone(),
        minted_by: Some(key.clone()),
        created_at: now,
        expires_at: expires,
    };
    let fresh = SecretHash::of("dl_fresh");
    store
        .insert_login_link(&link(&fresh, now + Duration::minutes(15)))
        .await
        .unwrap();
    assert!(matches!(
        store.insert_login_link(&link(&fresh, now)).await,
        Err(StoreError::Conflict(_))
    ));
    // Of concurrent uses, exactly one signs in.
    let uses =
        futures_util::future::join_all((0..8).map(|_| store.use_login_link(&fresh, now))).await;
    let signed: Vec<_> = uses
        .iter()
        .filter(
            |u| matches!(u, Ok(LinkUse::Signed(l)) if l.app_id == app.id && l.minted_by == Some(key.clone())),
        )
        .collect();
    assert_eq!(signed.len(), 1, "{uses:?}");
    assert!(
        uses.iter()
            .all(|u| matches!(u, Ok(LinkUse::Signed(_) | LinkUse::Used)))
    );
    let stale = SecretHash::of("dl_stale");
    store
        .insert_login_link(&link(&stale, now - Duration::seconds(1)))
        .await
        .unwrap();
    assert_eq!(
        store.use_login_link(&stale, now).await.unwrap(),
        LinkUse::Expired
    );
    assert_eq!(
        store
            .use_login_link(&SecretHash::of("dl_none"), now)
            .await
            .unwrap(),
        LinkUse::NotFound
    );
}

pub async fn dashboard_sessions_are_found_by_hash_and_end(store: Arc<dyn Store>) {
    use pipes_core::ports::DashboardSession;
    let app = new_app(&*store, "acme").await.app;
    let now = SystemClock.now();
    let key = store.list_keys(&app.id).await.unwrap()[0].key_id.clone();
    let session = DashboardSession {
        cookie_hash: SecretHash::of("ds_cookie"),
        app_id: app.id.clone(),
        csrf: "csrf-token-value".into(),
        minted_by: Some(key),
        created_at: now,
        expires_at: now + Duration::hours(12),
    };
    let operators = DashboardSession {
        cookie_hash: SecretHash::of("ds_operator"),
        minted_by: None,
        ..session.clone()
    };
    for s in [&session, &operators] {
        store.insert_dashboard_session(s).await.unwrap();
        let read = store.dashboard_session(&s.cookie_hash).await.unwrap();
        assert_eq!(
            read.map(|r| (r.app_id, r.csrf, r.minted_by)),
            Some((s.app_id.clone(), s.csrf.clone(), s.minted_by.clone()))
        );
    }
    assert_eq!(
        store
            .dashboard_session(&SecretHash::of("ds_other"))
            .await
            .unwrap(),
        None
    );
    store
        .end_dashboard_session(&session.cookie_hash)
        .await
        .unwrap();
    assert_eq!(
        store.dashboard_session(&session.cookie_hash).await.unwrap(),
        None
    );
    // Ending twice is not an error.
    store
        .end_dashboard_session(&session.cookie_hash)
        .await
        .unwrap();
}

pub async fn an_apps_recent_sessions_come_newest_first(store: Arc<dyn Store>) {
    let a = new_app(&*store, "acme").await.app;
    let b = new_app(&*store, "other").await.app;
    let mut ids = Vec::new();
    for i in 0..3 {
        let (mut s, _) = session(&a.id);
        s.created_at = SystemClock.now() - Duration::hours(3 - i);
        store.insert_session(&s).await.unwrap();
        ids.push(s.id);
    }
    let (mut old, _) = session(&a.id);
    old.created_at = SystemClock.now() - Duration::days(40);
    store.insert_session(&old).await.unwrap();
    store.insert_session(&session(&b.id).0).await.unwrap();
    let since = SystemClock.now() - Duration::days(30);
    let recent: Vec<_> = store
        .recent_sessions(&a.id, since, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    ids.reverse();
    assert_eq!(recent, ids, "newest first, only this App's, only since");
    assert_eq!(
        store.recent_sessions(&a.id, since, 2).await.unwrap().len(),
        2
    );
}

fn change(n: u32) -> pipes_core::webhooks::InboundChange {
    let body = json!({"object": "whatsapp_business_account", "entry": [
        {"id": "102290129340398", "time": 1_743_451_903 + n, "changes": [
            {"field": "account_update", "value": {"event": "ACCOUNT_DELETED"}}
        ]}
    ]});
    pipes_core::webhooks::parse_delivery(body.to_string().as_bytes(), SystemClock.now())
        .unwrap()
        .remove(0)
}

pub async fn meta_changes_are_stored_once_and_settled(store: Arc<dyn Store>) {
    use pipes_core::ports::ChangeOutcome;
    let (a, b) = (change(1), change(2));
    assert!(store.insert_change(&a).await.unwrap());
    assert!(!store.insert_change(&a).await.unwrap(), "a redelivery");
    assert!(store.insert_change(&b).await.unwrap());
    let stored = store.change(&a.id).await.unwrap().unwrap();
    assert_eq!(stored.change, a);
    assert_eq!(stored.outcome, None);
    assert!(store.change("chg_unknown").await.unwrap().is_none());
    let now = SystemClock.now();
    store
        .settle_change(&a.id, ChangeOutcome::Unmatched, "no live number", now)
        .await
        .unwrap();
    store
        .settle_change(&b.id, ChangeOutcome::Done, "ok", now)
        .await
        .unwrap();
    let a2 = store.change(&a.id).await.unwrap().unwrap();
    assert_eq!(a2.outcome, Some(ChangeOutcome::Unmatched));
    assert_eq!(a2.note.as_deref(), Some("no live number"));
    let kept = store.unmatched_changes(10).await.unwrap();
    assert_eq!(
        kept.iter().map(|c| c.change.id.clone()).collect::<Vec<_>>(),
        vec![a.id.clone()],
        "only unmatched changes are kept for the operator"
    );
}

pub async fn finish_reports_find_sessions_and_interruptions_are_claimable(store: Arc<dyn Store>) {
    let app = new_app(&*store, "acme").await.app;
    let (s, token) = pending_session(&*store, &app.id).await;
    let waba = pipes_core::WabaId::parse("495709166956424").unwrap();
    let finish = Abandon {
        at: SystemClock.now(),
        event: AbandonEvent::Finish,
        step: None,
        error_code: None,
        error_message: None,
        meta_session_id: None,
        waba_id: Some(waba.clone()),
    };
    assert!(store.record_finish(&s, &finish, &waba).await.unwrap());
    assert_eq!(
        store.sessions_finished_with(&waba).await.unwrap(),
        vec![s.id.clone()]
    );
    let other = pipes_core::WabaId::parse("1").unwrap();
    assert!(
        store
            .sessions_finished_with(&other)
            .await
            .unwrap()
            .is_empty()
    );
    let read = store.session(&s.id).await.unwrap().unwrap();
    assert_eq!(read.finished_waba(), Some(&waba));
    assert!(store.mark_interrupted(&s.id).await.unwrap());
    assert!(!store.mark_interrupted(&s.id).await.unwrap(), "once");
    assert_eq!(
        store.session(&s.id).await.unwrap().unwrap().status,
        SessionStatus::Interrupted
    );
    let now = SystemClock.now();
    let claim = store
        .claim_session(&token.hash(), "c", now, now + Duration::seconds(60))
        .await
        .unwrap();
    assert!(matches!(claim, Claim::Won(_)), "{claim:?}");
    assert!(
        !store.mark_interrupted(&s.id).await.unwrap(),
        "a completing session is not interrupted"
    );
    assert!(
        !store
            .mark_interrupted(&SessionId::generate())
            .await
            .unwrap()
    );
}

fn partner_event(
    app: &AppId,
    kind: pipes_core::events::EventType,
    ago_secs: i64,
) -> pipes_core::events::Event {
    pipes_core::events::Event::new(
        app.clone(),
        kind,
        &format!("cause-{ago_secs}"),
        SystemClock.now() - Duration::seconds(ago_secs),
        json!({"n": ago_secs}),
    )
}

pub async fn events_are_stored_once_and_listed_newest_first(store: Arc<dyn Store>) {
    use pipes_core::events::{Attempt, DeliveryStatus, EventType};
    let app = new_app(&*store, "acme").await.app;
    let other = new_app(&*store, "other").await.app;
    let kinds = [
        EventType::SignupCompleted,
        EventType::NumberHealthChanged,
        EventType::NumberHealthChanged,
        EventType::Ping,
        EventType::NumberHealthChanged,
    ];
    let mut made = Vec::new();
    for (i, k) in kinds.iter().enumerate() {
        let e = partner_event(&app.id, *k, 100 - i as i64 * 10);
        assert!(store.insert_event(&e).await.unwrap());
        assert!(
            !store.insert_event(&e).await.unwrap(),
            "emitted twice, stored once"
        );
        made.push(e);
    }
    let old = partner_event(&app.id, EventType::Ping, 31 * 86_400);
    store.insert_event(&old).await.unwrap();
    store
        .insert_event(&partner_event(&other.id, EventType::Ping, 1))
        .await
        .unwrap();
    let now = SystemClock.now();
    let newest: Vec<String> = made.iter().rev().map(|e| e.id.clone()).collect();
    let page = store
        .list_events(&app.id, None, 2, None, now)
        .await
        .unwrap();
    assert_eq!(
        page.events.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
        newest[..2]
    );
    let page2 = store
        .list_events(&app.id, None, 10, page.next_before.as_deref(), now)
        .await
        .unwrap();
    assert_eq!(
        page2
            .events
            .iter()
            .map(|e| e.id.clone())
            .collect::<Vec<_>>(),
        newest[2..],
        "the rest, without the 31-day-old one"
    );
    assert_eq!(page2.next_before, None);
    let health = store
        .list_events(&app.id, Some(EventType::NumberHealthChanged), 2, None, now)
        .await
        .unwrap();
    assert_eq!(health.events.len(), 2);
    assert!(health.next_before.is_some());
    assert!(
        health
            .events
            .iter()
            .all(|e| e.kind == EventType::NumberHealthChanged)
    );
    let mut e = made[0].clone();
    e.delivery = DeliveryStatus::Delivered;
    e.attempts.push(Attempt {
        at: now,
        status: Some(200),
        duration_ms: 12,
        detail: None,
    });
    store.save_delivery(&e).await.unwrap();
    assert_eq!(store.event(&app.id, &e.id).await.unwrap(), Some(e.clone()));
    assert_eq!(
        store.event(&other.id, &e.id).await.unwrap(),
        None,
        "an App sees only its own events"
    );
}

pub async fn endpoints_are_put_replaced_and_deleted(store: Arc<dyn Store>) {
    use pipes_core::crypto::{Envelope, MasterKeyWrapper};
    use pipes_core::events::{Endpoint, EndpointUrl};
    let app = new_app(&*store, "acme").await.app;
    let envelope = Envelope::new(Arc::new(MasterKeyWrapper::new(
        MasterKeyWrapper::generate_master(),
    )));
    let sealed = envelope.seal_app_secret(&app.id, b"whsec_x").await.unwrap();
    let mut endpoint = Endpoint {
        app_id: app.id.clone(),
        url: EndpointUrl::parse("https://partner.example/hooks", false).unwrap(),
        secret: sealed.clone(),
        previous: None,
        created_at: SystemClock.now(),
        failing_since: None,
    };
    assert_eq!(store.endpoint(&app.id).await.unwrap(), None);
    store.put_endpoint(&endpoint).await.unwrap();
    assert_eq!(
        store.endpoint(&app.id).await.unwrap(),
        Some(endpoint.clone())
    );
    endpoint.previous = Some((sealed, SystemClock.now()));
    endpoint.failing_since = Some(SystemClock.now());
    store.put_endpoint(&endpoint).await.unwrap();
    let read = store.endpoint(&app.id).await.unwrap().unwrap();
    assert_eq!(read.previous, endpoint.previous);
    assert!(store.delete_endpoint(&app.id).await.unwrap());
    assert!(!store.delete_endpoint(&app.id).await.unwrap());
    assert_eq!(store.endpoint(&app.id).await.unwrap(), None);
}

pub async fn an_app_update_reaches_its_keys_and_counters_count(store: Arc<dyn Store>) {
    let created = new_app(&*store, "acme").await;
    let extra = admin::create_key(&*store, SystemClock.now(), &created.app)
        .await
        .unwrap();
    let mut app = created.app.clone();
    app.rate_limit = pipes_core::app::RateLimit::new(7, 70).unwrap();
    app.allowed_origins = vec![];
    store.update_app(&app).await.unwrap();
    assert_eq!(store.app(&app.id).await.unwrap(), Some(app.clone()));
    for key in [&created.key, &extra.key] {
        let found = store.app_for_key(&key.hash()).await.unwrap();
        assert_eq!(found, Some(app.clone()), "the key's copy of the App");
    }
    let mut ghost = app.clone();
    ghost.id = AppId::generate();
    assert!(matches!(
        store.update_app(&ghost).await,
        Err(StoreError::NotFound(_))
    ));
    let w = SystemClock.now();
    let end = w + Duration::minutes(1);
    for expected in 1..=3 {
        assert_eq!(
            store.count_request("app:x", w, end).await.unwrap(),
            expected
        );
    }
    assert_eq!(store.count_request("app:y", w, end).await.unwrap(), 1);
    let next = w + Duration::seconds(5);
    assert_eq!(store.count_request("app:x", next, end).await.unwrap(), 1);
}

/// Runs every contract case against stores made by `$make` (an async expression).
macro_rules! contract_suite {
    ($module:ident, $make:expr) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            contract_suite!(@cases $make;
                apps_are_found_by_id_slug_and_key,
                a_taken_slug_is_refused_and_changes_nothing,
                keys_rotate_and_revoke,
                another_apps_key_cannot_be_revoked_through_this_app,
                a_key_for_an_unknown_app_is_refused,
                sessions_round_trip_by_id_and_token,
                a_session_id_or_token_is_never_stored_twice,
                hashes_are_looked_up_exactly,
                a_session_is_claimed_by_one_caller_at_a_time,
                released_and_failed_sessions_can_be_claimed_again,
                expired_sessions_cannot_be_claimed,
                completing_a_signup_writes_session_number_and_owner_together,
                a_number_owned_by_another_app_is_refused_whole,
                a_stale_number_version_is_refused,
                abandons_are_appended_until_the_session_completes,
                number_writes_are_conditional_on_the_version_read,
                removal_releases_the_number_for_signup_elsewhere,
                numbers_page_in_order_each_exactly_once,
                due_numbers_come_stalest_first,
                login_links_work_once_and_expire,
                dashboard_sessions_are_found_by_hash_and_end,
                an_apps_recent_sessions_come_newest_first,
                meta_changes_are_stored_once_and_settled,
                finish_reports_find_sessions_and_interruptions_are_claimable,
                events_are_stored_once_and_listed_newest_first,
                endpoints_are_put_replaced_and_deleted,
                an_app_update_reaches_its_keys_and_counters_count,
            );
        }
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (store, _guard) = $make;
                crate::contract::$case(store).await;
            }
        )*
    };
}

mod on {
    use std::sync::Arc;

    use pipes_core::Store;

    contract_suite!(embedded, {
        let (store, dir) = pipes_tests::embedded_store();
        (Arc::new(store) as Arc<dyn Store>, Some(dir))
    });

    contract_suite!(dynamodb, {
        let store = pipes_tests::dynamo_store().await;
        (Arc::new(store) as Arc<dyn Store>, None::<tempfile::TempDir>)
    });
}
