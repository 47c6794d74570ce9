package stickless;

/** A status from libstickless that is an error: bad input, a closed or forked handle, no memory... */
public final class StickError extends RuntimeException {
    private static final long serialVersionUID = 1L;

    private final int status;
    private final String name;
    private final String detail;

    StickError(int status, String name, String detail) {
        super(name + " (" + status + ")" + (detail == null ? "" : ": " + detail));
        this.status = status;
        this.name = name;
        this.detail = detail;
    }

    /** The status number, fixed forever by the ABI (stickless.h). */
    public int status() {
        return status;
    }

    /** The status name, e.g. "STICKLESS_BAD_KEY". */
    public String name() {
        return name;
    }

    /** Why, when the library said (a refused serve argument); null otherwise. */
    public String detail() {
        return detail;
    }
}
