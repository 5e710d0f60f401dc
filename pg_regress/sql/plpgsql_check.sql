-- Every PL/pgSQL function of the extension passes plpgsql_check (Debian's
-- postgresql-15-plpgsql-check) with its extra and security warnings on: no error, no warning.
-- A function whose warning does not apply says why and turns that check off in its body
-- (@plpgsql_check_options).
CREATE EXTENSION plpgsql_check;
SELECT count(*) > 60 AS functions_checked
  FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid AND d.classid = 'pg_proc'::regclass
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pageperfect') AND d.deptype = 'e'
   AND p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'plpgsql');
SELECT p.oid::regprocedure AS function, c.level, c.lineno, c.message
  FROM pg_depend d
  JOIN pg_proc p ON p.oid = d.objid AND d.classid = 'pg_proc'::regclass
  CROSS JOIN LATERAL plpgsql_check_function_tb(p.oid,
        relid => coalesce((SELECT t.tgrelid FROM pg_trigger t WHERE t.tgfoid = p.oid LIMIT 1), 0),
        extra_warnings => true, security_warnings => true) c
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pageperfect') AND d.deptype = 'e'
   AND p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'plpgsql')
 ORDER BY 1, 3;
DROP EXTENSION plpgsql_check;
