/// Version of the product.
public enum BuildInfo {
    public static let version = "0.1.0"
}
